import FoundationEssentials

/// Reads a package's Swift files and checks them.
package enum CheckRun {
    /// Checks the Swift files of `paths` (files, or folders read recursively, without `.build`
    /// and hidden folders).
    ///
    /// - Parameters:
    ///   - paths: Files and folders.
    ///   - root: The package's root: findings name files relative to it, and `exclude` applies
    ///     to those names.
    ///   - configuration: The package's additions.
    ///   - baseline: Findings accepted for now.
    /// - Throws: ``CheckError/unreadable(path:reason:)`` for a path that does not exist or a file
    ///   that is not UTF-8.
    package static func run(
        paths: [String],
        root: String,
        configuration: CheckConfiguration,
        baseline: Baseline?
    ) throws -> CheckReport {
        let start = ContinuousClock.now
        let files = try swiftFiles(in: paths).filter { file in
            !configuration.exclude.contains { relative(file, to: root).hasPrefix($0) }
        }
        let check = BlockingCheck(configuration: configuration)
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw CheckError.unreadable(path: file, reason: "the file cannot be opened")
            }
            guard let source = String(validating: data, as: UTF8.self) else {
                throw CheckError.unreadable(path: file, reason: "the file is not UTF-8")
            }
            check.add(source: source, path: relative(file, to: root))
        }
        let (found, suppressed) = check.run()
        let (expected, new, stale) =
            baseline?.compare(found) ?? (expected: [], new: found, stale: [])
        return CheckReport(
            findings: new,
            expected: expected,
            suppressed: suppressed,
            stale: stale,
            fileCount: files.count,
            duration: ContinuousClock.now - start
        )
    }

    /// The Swift files of `paths`, sorted.
    static func swiftFiles(in paths: [String]) throws -> [String] {
        var files: Set<String> = []
        let manager = FileManager.default
        for path in paths {
            var isFolder = false
            guard manager.fileExists(atPath: path, isDirectory: &isFolder) else {
                throw CheckError.unreadable(path: path, reason: "no such file or folder")
            }
            guard isFolder else {
                files.insert(path)
                continue
            }
            let base = path.hasSuffix("/") ? String(path.dropLast()) : path
            for subpath in try manager.subpathsOfDirectory(atPath: base) where subpath.hasSuffix(".swift") {
                let components = subpath.split(separator: "/")
                if components.dropLast().contains(where: { $0.hasPrefix(".") }) { continue }
                files.insert("\(base)/\(subpath)")
            }
        }
        return files.sorted()
    }

    /// `path` relative to `root` when it is inside it.
    static func relative(_ path: String, to root: String) -> String {
        var root = root
        while root.hasSuffix("/") && root.count > 1 { root.removeLast() }
        if root == "." || root.isEmpty { return path.hasPrefix("./") ? String(path.dropFirst(2)) : path }
        guard path.hasPrefix(root + "/") else { return path }
        return String(path.dropFirst(root.count + 1))
    }

    /// Reads a configuration file.
    package static func configuration(at path: String) throws -> CheckConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckError.unreadable(path: path, reason: "the file cannot be opened")
        }
        do {
            return try JSONDecoder().decode(CheckConfiguration.self, from: data)
        } catch let error as CheckError {
            throw CheckError.configuration(
                "\(path): \(error.description.replacing("invalid configuration: ", with: ""))"
            )
        } catch {
            throw CheckError.configuration("\(path): not the expected JSON (\(error))")
        }
    }

    /// Reads a baseline file.
    package static func baseline(at path: String) throws -> Baseline {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckError.baseline(path: path, reason: "the file cannot be opened")
        }
        do {
            return try JSONDecoder().decode(Baseline.self, from: data)
        } catch {
            throw CheckError.baseline(
                path: path,
                reason: "expected {\"findings\": [{\"file\": …, \"path\": …}]}, as the check's --json output (\(error))"
            )
        }
    }
}
