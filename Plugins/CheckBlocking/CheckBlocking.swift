import Foundation
import PackagePlugin

/// `swift package check-blocking`: finds every path from an async context to a blocking call in
/// the package's Swift targets, directly or through the package's own synchronous functions.
///
/// Options: `--target NAME` (repeatable; every Swift target by default), and those of
/// `sb-check-blocking` (`--json`, `--strict`, `--verbose`, `--config FILE`, `--baseline FILE`).
@main
struct CheckBlocking: CommandPlugin {
    func performCommand(context: PluginContext, arguments: [String]) async throws {
        var extractor = ArgumentExtractor(arguments)
        let names = extractor.extractOption(named: "target")
        let targets = names.isEmpty ? context.package.targets : try context.package.targets(named: names)
        let folders = targets.compactMap { ($0 as? SourceModuleTarget)?.directoryURL.path(percentEncoded: false) }
        guard !folders.isEmpty else {
            Diagnostics.error("check-blocking: the package has no Swift targets to check")
            return
        }
        // Files named on the command line are relative to the package's root.
        let root = context.package.directoryURL.path(percentEncoded: false)
        var options: [String] = []
        var remaining = extractor.remainingArguments[...]
        while let option = remaining.popFirst() {
            options.append(option)
            if option == "--config" || option == "--baseline", let file = remaining.popFirst() {
                options.append(file.hasPrefix("/") ? file : root + (root.hasSuffix("/") ? "" : "/") + file)
            }
        }
        let tool = try context.tool(named: "sb-check-blocking")
        let process = Process()
        process.executableURL = tool.url
        process.arguments = ["--root", root] + options + ["--"] + folders
        try process.run()
        process.waitUntilExit()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw CheckBlockingFailed(status: process.terminationStatus)
        }
    }
}

/// The check failed: a finding in strict mode, or an error it printed.
struct CheckBlockingFailed: Error, CustomStringConvertible {
    var status: Int32
    var description: String {
        status == 1 ? "blocking calls from async contexts (strict mode)" : "the check could not run (status \(status))"
    }
}
