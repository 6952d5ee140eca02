public import SyncBridge
public import Testing

/// A Swift Testing trait that runs a `DeadlockDetector` for a test and fails the test with each
/// report that concerns it.
///
/// ```swift
/// @Test(.deadlockDetector())
/// func transfersTakeLocksInOneOrder() async throws {
///     try await bank.transfer(10, from: alice, to: bob)   // an inversion fails the test
/// }
///
/// @Suite(.deadlockDetector(mode: .throwError))   // every test of the suite
/// struct LedgerTests { … }
/// ```
///
/// Reports are attributed to the test whose tasks made the waits or took the locks (a task-local
/// scope, inherited by child tasks, `Task {}` and the work `waitForAsync` awaits), so tests with
/// this trait still run in parallel. Lock order is recorded process-wide, as lockdep does: an
/// inversion is reported to the test that takes the second order.
public struct DeadlockDetectorTrait: TestTrait, SuiteTrait, TestScoping {
    /// What a detection does besides failing the test: `DeadlockDetector/Mode/report` lets a
    /// deadlocked wait hang (until its timeout); `DeadlockDetector/Mode/throwError` makes it
    /// throw `DeadlockError`.
    public let mode: DeadlockDetector.Mode
    /// A wait longer than this fails the test as stuck.
    public let stuckWaitThreshold: Duration

    /// Applies to every test of a suite that carries it.
    public var isRecursive: Bool { true }

    /// Creates the trait; prefer `Trait/deadlockDetector(mode:stuckWaitThreshold:)`.
    public init(mode: DeadlockDetector.Mode, stuckWaitThreshold: Duration) {
        self.mode = mode
        self.stuckWaitThreshold = stuckWaitThreshold
    }

    /// Runs the test with a detector and records its reports as issues.
    public func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        guard testCase != nil || !test.isSuite else { return try await function() }
        let reports = try await Self.collectReports(mode: mode, stuckWaitThreshold: stuckWaitThreshold, function)
        for report in reports {
            Issue.record(Comment(rawValue: report.description))
        }
    }

    /// Runs `body` under a detector of its own scope (`scope`, a new one by default) and returns
    /// the reports that concern it.
    package static func collectReports(
        mode: DeadlockDetector.Mode,
        stuckWaitThreshold: Duration,
        inScope scope: UInt64 = WatchdogScope.next(),
        _ body: @Sendable () async throws -> Void
    ) async throws -> [DeadlockReport] {
        let collected = DeadlockReportList()
        let detector = DeadlockDetector(
            configuration: .init(mode: mode, stuckWaitThreshold: stuckWaitThreshold, onReport: collected.append),
            scope: scope
        )
        detector.start()
        do {
            try await WatchdogScope.$current.withValue(scope) { try await body() }
        } catch {
            await detector.shutdown()
            throw error
        }
        await detector.shutdown()
        return collected.all
    }
}

extension Trait where Self == DeadlockDetectorTrait {
    /// Fails the test (or every test of the suite) when the deadlock detector reports anything
    /// its code caused: a cycle of waits, a lock-order inversion, a nested pool lease, a refused
    /// guarded wait, a wait stuck longer than `stuckWaitThreshold`.
    ///
    /// - Parameters:
    ///   - mode: `DeadlockDetector/Mode/report` (default) or `DeadlockDetector/Mode/throwError`,
    ///     which also ends deadlocked waits with `DeadlockError` so that the test cannot hang.
    ///   - stuckWaitThreshold: The longest a wait may last. Default 5 s.
    public static func deadlockDetector(
        mode: DeadlockDetector.Mode = .report,
        stuckWaitThreshold: Duration = .seconds(5)
    ) -> Self {
        DeadlockDetectorTrait(mode: mode, stuckWaitThreshold: stuckWaitThreshold)
    }
}

/// A thread-safe list of deadlock reports.
final class DeadlockReportList: Sendable {
    private let reports = Locked<[DeadlockReport]>([])

    func append(_ report: DeadlockReport) {
        reports.withLock { $0.append(report) }
    }

    var all: [DeadlockReport] { reports.current }
}
