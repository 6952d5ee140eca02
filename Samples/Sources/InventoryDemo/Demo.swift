import Foundation
import InventoryCore
import Logging
import SampleSupport
import SyncBridge
import Synchronization

/// Counts the watchdog's and the detector's reports and keeps the first of each kind to print.
final class ReportLog: Sendable {
    private struct State {
        var watchdogReports = 0
        var deadlockReports = 0
        var firstStall: WatchdogReport?
        var firstDeadlock: DeadlockReport?
    }

    private let state = Mutex(State())

    func record(_ report: WatchdogReport) {
        state.withLock { state in
            state.watchdogReports += 1
            if report.kind == .stall && !report.stacks.isEmpty && state.firstStall == nil { state.firstStall = report }
        }
    }

    func record(_ report: DeadlockReport) {
        state.withLock { state in
            state.deadlockReports += 1
            if state.firstDeadlock == nil { state.firstDeadlock = report }
        }
    }

    var counts: (watchdog: Int, deadlock: Int) {
        state.withLock { ($0.watchdogReports, $0.deadlockReports) }
    }

    /// The counts once the reports of what already happened have arrived: the watchdog and the
    /// detector deliver from threads of their own, a little later. Waits until the counts stay
    /// the same for 200 ms, at most 2 s.
    func settledCounts() async -> (watchdog: Int, deadlock: Int) {
        var last = counts
        var unchangedSince = ContinuousClock.now
        let deadline = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < deadline && ContinuousClock.now - unchangedSince < .milliseconds(200) {
            try? await Task.sleep(for: .milliseconds(20))
            let now = counts
            if now != last {
                last = now
                unchangedSince = .now
            }
        }
        return last
    }

    /// The first stall report with stacks, once.
    func takeFirstStall() -> WatchdogReport? {
        state.withLock { state in
            defer { state.firstStall = nil }
            return state.firstStall
        }
    }

    /// The first deadlock report, once.
    func takeFirstDeadlock() -> DeadlockReport? {
        state.withLock { state in
            defer { state.firstDeadlock = nil }
            return state.firstDeadlock
        }
    }
}

/// One run of the demo.
struct Demo: Sendable {
    let options: Options
    let progress = ProgressLine()
    let reports = ReportLog()
    /// The products the load spreads over.
    let productCount = 500

    /// Loggers stay quiet: the demo prints what matters itself.
    static let quietLogger: Logger = {
        var logger = Logger(label: "inventory-demo")
        logger.logLevel = .critical
        return logger
    }()

    func run() async throws {
        print(
            """
            SyncBridge demo: a legacy inventory service (libpq and Connector/C, one connection, a semaphore)
            under \(options.clients) concurrent clients for \(Self.format(options.phaseDuration)) per phase: 70 % lookups, 25 % reserve + release, 5 % low-stock reports.
            Meanwhile another program (a warehouse sync) locks 20 products' rows for 200 ms twice a second.

            """
        )
        progress.start("starting the databases")
        let databases = try await SampleDatabases.start(
            postgres: options.databases.contains(.postgres),
            mariaDB: options.databases.contains(.mariaDB)
        )
        progress.finish()
        print("Databases: \(databases.origin)\n")

        let reports = self.reports
        let watchdog = Watchdog(
            configuration: .init(threshold: .milliseconds(100), onReport: { reports.record($0) }),
            logger: Self.quietLogger
        )
        let detector = DeadlockDetector(
            configuration: .init(mode: .report, onReport: { reports.record($0) }),
            logger: Self.quietLogger
        )
        watchdog.start()
        detector.start()

        var results: [PhaseResult] = []
        do {
            for database in options.databases {
                for mode in Mode.allCases {
                    try Task.checkCancellation()
                    print("\(mode.label) (\(database.rawValue)): \(mode.explanation)")
                    let result = try await runPhase(mode, on: database, databases: databases)
                    results.append(result)
                    print("  \(summary(of: result))")
                    printFirstReports()
                    print("")
                }
            }
        } catch {
            progress.finish()
            await cleanUp(watchdog: watchdog, detector: detector, databases: databases)
            throw error
        }
        await cleanUp(watchdog: watchdog, detector: detector, databases: databases)

        print(ResultTable.render(results))
        print(
            """

            requests/s and latency count completed requests; "other tasks' delay" is how late a 10 ms sleep in an
            unrelated task woke up. The watchdog flags the cooperative pool when it runs no task for 100 ms; the
            deadlock detector reports waits that cannot end, such as a semaphore wait on a cooperative thread.
            Next: MIGRATION.md walks through the same steps in your code.
            """
        )
    }

    /// Stops the watchdog, the detector and the throwaway servers, even when the run was
    /// cancelled (the work runs in a task of its own that Ctrl-C does not cancel).
    private func cleanUp(watchdog: Watchdog, detector: DeadlockDetector, databases: SampleDatabases) async {
        let progress = self.progress
        await Task.detached {
            await watchdog.shutdown()
            await detector.shutdown()
            progress.start("stopping the databases")
            await databases.stop()
            progress.finish()
        }.value
    }

    private func summary(of result: PhaseResult) -> String {
        var parts: [String] = []
        if result.completed > 0 {
            parts.append("\(Int(result.requestsPerSecond)) requests/s")
            if let p99 = result.latencies.percentile(0.99) {
                parts.append("p99 \(ResultTable.format(p99.inMilliseconds, decimals: 1)) ms")
            }
        }
        if result.refused > 0 {
            parts.append("\(result.refused) of \(result.refused + result.completed) requests refused")
        }
        parts.append("\(result.watchdogReports) watchdog reports, \(result.deadlockReports) deadlock reports")
        return parts.joined(separator: ", ")
    }

    private func printFirstReports() {
        if let stall = reports.takeFirstStall() {
            print("  The watchdog's first stall report (first stack, trimmed):")
            print(Self.trimmed(stall.description, lines: 24))
        }
        if let deadlock = reports.takeFirstDeadlock() {
            print("  The deadlock detector's first report (trimmed):")
            print(Self.trimmed(deadlock.description, lines: 12))
        }
    }

    static func trimmed(_ text: String, lines: Int) -> String {
        let all = text.split(separator: "\n", omittingEmptySubsequences: false)
        let kept = all.prefix(lines).map { "    │ " + $0 }
        return (kept + (all.count > lines ? ["    │ … \(all.count - lines) more lines"] : [])).joined(separator: "\n")
    }

    static func format(_ duration: Duration) -> String {
        let seconds = duration.inSeconds
        return seconds == seconds.rounded() ? "\(Int(seconds)) s" : String(format: "%.1f s", seconds)
    }
}
