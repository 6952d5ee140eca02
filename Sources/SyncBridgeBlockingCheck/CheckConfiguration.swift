/// A package's additions to the check, read from `.check-blocking.json` at its root:
///
/// ```json
/// {
///     "blocking": ["legacy_fetch", "LegacyClient.fetch", "*.flushSynchronously"],
///     "offloading": ["submitToLegacyQueue"],
///     "exclude": ["Sources/Generated/"]
/// }
/// ```
///
/// - `blocking`: more blocking calls: a free function (`legacy_fetch`), a type's method
///   (`LegacyClient.fetch`), or a method on any receiver (`*.flushSynchronously`).
/// - `offloading`: calls whose closure runs on a thread of its own, by base name (like
///   `BlockingPool.run`): calls inside it are not reported.
/// - `exclude`: paths, relative to the package's root, whose files are not read.
package struct CheckConfiguration: Sendable, Decodable {
    /// Blocking calls and offloading calls, the standard ones and the configuration's.
    package var catalogue = BlockingCatalogue.standard
    /// Path prefixes whose files are not read.
    package var exclude: [String] = []

    /// The standard catalogue, nothing excluded.
    package init() {}

    private enum Key: String, CodingKey, CaseIterable {
        case blocking, offloading, exclude
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    package init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
        if let unknown = keys.first(where: { Key(rawValue: $0) == nil }) {
            throw CheckError.configuration(
                "unknown key \"\(unknown)\"; the keys are \(Key.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))"
            )
        }
        let container = try decoder.container(keyedBy: Key.self)
        for (position, entry) in (try container.decodeIfPresent([String].self, forKey: .blocking) ?? []).enumerated() {
            catalogue.blocking.append(try Self.blockingAPI(entry, at: position))
        }
        for entry in try container.decodeIfPresent([String].self, forKey: .offloading) ?? [] {
            guard Self.isIdentifier(entry) else {
                throw CheckError.configuration(
                    "offloading entry \"\(entry)\" is not a function's base name (such as \"submitToLegacyQueue\")"
                )
            }
            catalogue.offloading.insert(entry)
        }
        exclude = try container.decodeIfPresent([String].self, forKey: .exclude) ?? []
    }

    /// `name`, `Type.name` or `*.name`.
    private static func blockingAPI(_ entry: String, at position: Int) throws -> BlockingAPI {
        let parts = entry.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let shape: BlockingAPI.Shape? =
            switch parts.count {
            case 1 where isIdentifier(parts[0]): .function(parts[0])
            case 2 where parts[0] == "*" && isIdentifier(parts[1]): .anyReceiver(parts[1])
            case 2 where isIdentifier(parts[0]) && isIdentifier(parts[1]): .method(type: parts[0], name: parts[1])
            default: nil
            }
        guard let shape else {
            throw CheckError.configuration(
                "blocking entry \(position) \"\(entry)\" is none of \"function\", \"Type.method\", \"*.method\""
            )
        }
        return BlockingAPI(shape: shape, category: .declared)
    }

    private static func isIdentifier(_ text: String) -> Bool {
        guard let first = text.first, first == "_" || first.isLetter else { return false }
        return text.allSatisfy { $0 == "_" || $0.isLetter || $0.isNumber }
    }
}

/// Why the check could not run.
package enum CheckError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration file is not valid; what is wrong.
    case configuration(String)
    /// A file or folder could not be read.
    case unreadable(path: String, reason: String)
    /// The baseline file is not valid.
    case baseline(path: String, reason: String)
    /// The command line is not valid.
    case usage(String)

    package var description: String {
        switch self {
        case .configuration(let message): "invalid configuration: \(message)"
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        case .baseline(let path, let reason): "invalid baseline \(path): \(reason)"
        case .usage(let message): message
        }
    }
}

/// Findings a package has accepted for now, by file and path (not by line, which moves): the
/// `findings` of the check's JSON output, of which only `file` and `path` are read.
package struct Baseline: Sendable, Decodable {
    /// One accepted finding.
    package struct Entry: Sendable, Hashable, Decodable {
        /// The file of the async context's call.
        package var file: String
        /// `context → … → blocking call`.
        package var path: String
    }

    /// The accepted findings.
    package var findings: [Entry]

    /// Splits findings into the ones the baseline expects and the new ones, and lists the
    /// entries no finding matches any more (fixed, or moved: the baseline is out of date).
    package func compare(_ found: [Finding]) -> (expected: [Finding], new: [Finding], stale: [Entry]) {
        let accepted = Set(findings)
        var seen: Set<Entry> = []
        var expected: [Finding] = []
        var new: [Finding] = []
        for finding in found {
            let entry = Entry(file: finding.location.file, path: finding.path)
            if accepted.contains(entry) {
                expected.append(finding)
                seen.insert(entry)
            } else {
                new.append(finding)
            }
        }
        return (expected, new, findings.filter { !seen.contains($0) })
    }
}
