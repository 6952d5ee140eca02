public import SyncBridge
public import Testing

/// A Swift Testing trait that fails a test when its code blocks Swift's cooperative pool (and,
/// given them, event loops).
///
/// ```swift
/// @Test(.watchdog(threshold: .milliseconds(50)))
/// func refreshOffloadsTheLegacyCall() async throws {
///     try await cache.refresh()   // fails the test if it blocks a cooperative thread
/// }
///
/// @Suite(.watchdog())              // every test of the suite
/// struct InventoryTests { … }
///
/// // Vapor's and Hummingbird's default group: a route that blocks its loop fails the test.
/// @Suite(.watchdog(eventLoops: MultiThreadedEventLoopGroup.singleton.watchdogTargets))
/// struct RouteTests { … }
/// ```
///
/// During the test a `Watchdog` runs and each of its reports becomes an issue of the test, with
/// the report (headline, facts, stacks) as its comment:
/// - **blocking calls** (`Blocking`, `waitForAsync`…) are attributed exactly: the test's task
///   carries a scope (a task-local, inherited by child tasks and `Task {}`, not by
///   `Task.detached`) that the report records, so calls made by tests running in parallel are not
///   counted against this one;
/// - **stalls** of a band, and slow jobs in per-job mode, cannot be attributed to a task. So
///   tests that carry this trait run **one at a time** (the trait serializes them across the
///   whole process), and a stall during such a test is counted against it. Tests without the
///   trait still run in parallel; keep code that blocks on purpose out of them.
public struct WatchdogTrait: TestTrait, SuiteTrait, TestScoping {
    /// A band whose probe waits longer than this, or (per-job mode) a job that runs longer, fails
    /// the test.
    public let threshold: Duration
    /// Per-job mode: every job of the global executor is timed, so that one slow job fails the
    /// test even while other cooperative threads are free (see
    /// `Watchdog/Configuration/timesEveryJob`).
    public let timesEveryJob: Bool
    /// Event loops watched too (`SyncBridgeNIO`'s `group.watchdogTargets`): a loop that runs no
    /// task for longer than the threshold, or a blocking call on its thread, fails the test.
    public let eventLoops: [any WatchdogTarget]

    /// Applies to every test of a suite that carries it.
    public var isRecursive: Bool { true }

    /// Creates the trait; prefer `Trait/watchdog(threshold:timesEveryJob:eventLoops:)`.
    public init(threshold: Duration, timesEveryJob: Bool, eventLoops: [any WatchdogTarget] = []) {
        self.threshold = threshold
        self.timesEveryJob = timesEveryJob
        self.eventLoops = eventLoops
    }

    /// Runs the test with a watchdog and records its reports as issues.
    public func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        // A suite's own scope: its tests get theirs.
        guard testCase != nil || !test.isSuite else { return try await function() }
        try await WatchdogScope.exclusively {
            let reports = try await Self.collectReports(
                threshold: threshold,
                timesEveryJob: timesEveryJob,
                eventLoops: eventLoops,
                function
            )
            for report in reports {
                Issue.record(Comment(rawValue: report.description))
            }
        }
    }

    /// Runs `body` under a watchdog and returns the reports that concern it: every stall and slow
    /// job, and the blocking calls made in `body`'s task tree.
    package static func collectReports(
        threshold: Duration,
        timesEveryJob: Bool,
        eventLoops: [any WatchdogTarget] = [],
        _ body: @Sendable () async throws -> Void
    ) async throws -> [WatchdogReport] {
        let scope = WatchdogScope.next()
        let collected = ReportList()
        let watchdog = Watchdog(
            configuration: .init(
                threshold: threshold,
                onReport: collected.append,
                timesEveryJob: timesEveryJob,
                targets: eventLoops
            ),
            scope: scope
        )
        watchdog.start()
        do {
            try await WatchdogScope.run(scope, timingJobs: timesEveryJob, body)
        } catch {
            await watchdog.shutdown()
            throw error
        }
        await watchdog.shutdown()
        // A blocking call on a watched loop's thread carries no task's scope: it is the test's
        // when the loop is one it watches.
        let loops = Set(eventLoops.map(\.watchdogName))
        return collected.all.filter { report in
            report.kind != .blockingCall || report.scopeID == scope
                || (report.scopeID == nil && report.eventLoop.map(loops.contains) == true)
        }
    }

}

extension Trait where Self == WatchdogTrait {
    /// Fails the test (or every test of the suite) when its code blocks Swift's cooperative pool
    /// for longer than `threshold`, or makes a blocking call there. Tests with this trait run one
    /// at a time (see ``WatchdogTrait``).
    ///
    /// - Parameters:
    ///   - threshold: The longest a band (or loop) may go without running a task. Default 100 ms.
    ///   - timesEveryJob: Also times every single job, to catch one slow job while other
    ///     threads are free. Default `false`.
    ///   - eventLoops: Event loops to watch too (`SyncBridgeNIO`'s `group.watchdogTargets`).
    ///     Default none.
    public static func watchdog(
        threshold: Duration = .milliseconds(100),
        timesEveryJob: Bool = false,
        eventLoops: [any WatchdogTarget] = []
    ) -> Self {
        WatchdogTrait(threshold: threshold, timesEveryJob: timesEveryJob, eventLoops: eventLoops)
    }
}

/// A thread-safe list of reports.
final class ReportList: Sendable {
    private let reports = Locked<[WatchdogReport]>([])

    func append(_ report: WatchdogReport) {
        reports.withLock { $0.append(report) }
    }

    var all: [WatchdogReport] { reports.current }
}
