import FoundationEssentials
import SyncBridgeBlockingCheck

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `sb-check-blocking`: finds the paths from async contexts to blocking calls in Swift files. The
/// `check-blocking` command plugin runs it over a package's targets.
let usage = """
    usage: sb-check-blocking [--json] [--strict] [--verbose] [--root DIR] [--config FILE] [--baseline FILE] PATH...

      PATH            Swift files, or folders read recursively
      --root DIR      the package's root: findings name files relative to it (default: .)
      --config FILE   additions (default: DIR/.check-blocking.json when it exists)
      --baseline FILE findings accepted for now: the `findings` of a --json report
      --json          print the report as JSON
      --strict        exit 1 on a finding the baseline does not expect, or a baseline entry no
                      finding matches
      --verbose       also list expected and suppressed findings

    Suppress a finding with a comment on a line of its path: // check-blocking: allow <reason>
    """

func standardError(_ text: String) {
    var text = text + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

var arguments = CommandLine.arguments.dropFirst()
var json = false
var strict = false
var verbose = false
var root = "."
var configurationPath: String?
var baselinePath: String?
var paths: [String] = []

do {
    while let argument = arguments.popFirst() {
        func value() throws -> String {
            guard let value = arguments.popFirst() else {
                throw CheckError.usage("\(argument) needs a value\n\n\(usage)")
            }
            return value
        }
        switch argument {
        case "--json": json = true
        case "--strict": strict = true
        case "--verbose": verbose = true
        case "--root": root = try value()
        case "--config": configurationPath = try value()
        case "--baseline": baselinePath = try value()
        case "--help", "-h":
            print(usage)
            exit(0)
        case "--":
            paths.append(contentsOf: arguments)
            arguments.removeAll()
        default:
            guard !argument.hasPrefix("-") else { throw CheckError.usage("unknown option \(argument)\n\n\(usage)") }
            paths.append(argument)
        }
    }
    guard !paths.isEmpty else { throw CheckError.usage("no files or folders to check\n\n\(usage)") }
    let defaultConfiguration = "\(root)/.check-blocking.json"
    if configurationPath == nil, FileManager.default.fileExists(atPath: defaultConfiguration) {
        configurationPath = defaultConfiguration
    }
    let configuration = try configurationPath.map(CheckRun.configuration(at:)) ?? CheckConfiguration()
    let baseline = try baselinePath.map(CheckRun.baseline(at:))
    let report = try CheckRun.run(paths: paths, root: root, configuration: configuration, baseline: baseline)
    print(json ? try report.json() : report.text(verbose: verbose))
    exit(strict && report.failsStrictMode ? 1 : 0)
} catch let error as CheckError {
    standardError("sb-check-blocking: \(error)")
    exit(2)
} catch {
    standardError("sb-check-blocking: \(error)")
    exit(2)
}
