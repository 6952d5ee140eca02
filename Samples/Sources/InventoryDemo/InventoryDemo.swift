import Foundation
import SampleSupport

/// The README's first command: the legacy inventory service under a concurrent load, four ways,
/// on a throwaway PostgreSQL and MariaDB (or `POSTGRES_URL` / `MARIADB_URL`), with the watchdog
/// and the deadlock detector watching; it ends with one table.
///
/// Options: `--seconds N` per phase (default 5), `--clients N` concurrent clients (default 32),
/// `--database postgres|mariadb|both` (default both).
@main
struct InventoryDemo {
    static func main() async {
        SampleLogging.bootstrap()
        let options: Options
        do {
            options = try Options(arguments: Array(CommandLine.arguments.dropFirst()))
        } catch {
            print("inventory-demo: \(error)\n\(Options.usage)")
            exit(2)
        }
        await SampleMain.run("inventory-demo", interruptMessage: "Interrupted: stopping the load and the servers") {
            try await Demo(options: options).run()
        }
    }
}

struct Options: Sendable {
    var phaseDuration: Duration = .seconds(5)
    var clients = 32
    var databases: [Database] = Database.allCases

    static let usage = "usage: inventory-demo [--seconds N] [--clients N] [--database postgres|mariadb|both]"

    init(arguments: [String]) throws {
        var arguments = arguments[...]
        while let option = arguments.popFirst() {
            guard let value = arguments.popFirst() else { throw DemoError("\(option) needs a value") }
            switch option {
            case "--seconds":
                guard let seconds = Double(value), seconds > 0 else {
                    throw DemoError("--seconds must be a positive number, not \(value)")
                }
                phaseDuration = .milliseconds(Int(seconds * 1000))
            case "--clients":
                guard let count = Int(value), count > 0 else {
                    throw DemoError("--clients must be a positive integer, not \(value)")
                }
                clients = count
            case "--database":
                switch value {
                case "postgres": databases = [.postgres]
                case "mariadb": databases = [.mariaDB]
                case "both": databases = Database.allCases
                default: throw DemoError("--database must be postgres, mariadb or both, not \(value)")
                }
            default:
                throw DemoError("unknown option \(option)")
            }
        }
    }
}

struct DemoError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum Database: String, CaseIterable, Sendable {
    case postgres = "PostgreSQL"
    case mariaDB = "MariaDB"
}

/// The four ways the demo runs the service: the steps of MIGRATION.md.
enum Mode: CaseIterable, Sendable {
    /// The legacy store's methods called straight from tasks.
    case legacy
    /// The same, with the semaphore swapped for a `GuardedSemaphore` (step 2).
    case legacyGuarded
    /// The legacy functions through `withRawConnection` (step 1).
    case wrapped
    /// The async API (step 3).
    case migrated

    var label: String {
        switch self {
        case .legacy: "legacy, called from tasks"
        case .legacyGuarded: "legacy + GuardedSemaphore"
        case .wrapped: "wrapped (withRawConnection)"
        case .migrated: "migrated (async API)"
        }
    }

    /// What the phase shows, printed before it runs.
    var explanation: String {
        switch self {
        case .legacy:
            "The legacy store's blocking calls run on Swift's cooperative threads, taking turns on one connection through a DispatchSemaphore."
        case .legacyGuarded:
            "Step 2: the DispatchSemaphore becomes a GuardedSemaphore. Called from tasks, it refuses to block a cooperative thread, and the deadlock detector names the call site. Each client sends 10 requests."
        case .wrapped:
            "Step 1: the same legacy functions, unchanged, run through withRawConnection on the pool's connection threads."
        case .migrated:
            "Step 3: typed async queries and transactions on the same pool."
        }
    }
}
