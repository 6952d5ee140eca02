public import SyncBridge
public import Testing

/// Runs `body` expecting the deadlock detector to report `pattern`, and returns that report for
/// further checks: a test that keeps a known trap flagged until its migration step lands, or that
/// tests a guard of the team's own.
///
/// ```swift
/// @Test(.deadlockDetector(mode: .throwError))
/// func legacyReserveStillLeasesTwice() async throws {
///     let report = try await expectDeadlockReport(.nestedPoolLease) {
///         try await legacyStock.reserve(item)   // leases a second connection inside the first
///     }
///     #expect(report?.chain.first?.callSite?.hasPrefix("Inventory/Stock.swift") == true)
/// }
/// ```
///
/// `body` runs under a detector of its own, in a report scope of its own, so the expected report
/// does not reach the test's `.deadlockDetector()` trait and does not fail the test; any report
/// outside `body` still does. The test fails when no report of `pattern` arrives, and with every
/// report of another pattern. The refusal that the expected report causes — `DeadlockError` or
/// `GuardedWaitError` thrown out of `body` — is the expected outcome and is not rethrown; any
/// other error is.
///
/// - Parameters:
///   - pattern: The report expected.
///   - mode: The detector's mode while `body` runs: `DeadlockDetector/Mode/throwError` (the
///     default) ends the deadlocked wait, so that `body` cannot hang.
///   - stuckWaitThreshold: For `DeadlockPattern/stuckWait`: how long a wait may last.
///   - sourceLocation: Where failures are reported; leave the default.
///   - body: The code expected to cause the report.
/// - Returns: The first report of `pattern`; `nil` (and the test fails) when none arrived.
/// - Throws: What `body` throws, except the refusal the expected report causes.
@discardableResult
public func expectDeadlockReport(
    _ pattern: DeadlockPattern,
    mode: DeadlockDetector.Mode = .throwError,
    stuckWaitThreshold: Duration = .seconds(5),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @Sendable () async throws -> Void
) async throws -> DeadlockReport? {
    try await ExpectedReports.deadlockReport(pattern, mode: mode, stuckWaitThreshold: stuckWaitThreshold, body)
        .settle { Issue.record(Comment(rawValue: $0), sourceLocation: sourceLocation) }
}

/// Runs `body` expecting it to make a blocking call on a thread of Swift's cooperative pool —
/// one that `Blocking` marks, or a guarded wait refused there — and returns the watchdog's report
/// of it: a test that keeps a legacy call flagged until it is moved off the pool.
///
/// ```swift
/// @Test(.watchdog())
/// func legacyLookupStillBlocks() async throws {
///     let report = try await expectBlockingCall("legacyLookup") {
///         _ = try legacyInventory.lookup(sku)   // calls Blocking.call("legacyLookup") { … }
///     }
///     #expect(report?.callSite?.hasPrefix("Inventory/") == true)
/// }
/// ```
///
/// The calls `body`'s tasks make go to a watchdog of their own, so the expected one does not fail
/// the test under a `.watchdog()` trait, and reach no other watchdog (such as one
/// `SYNCBRIDGE_WATCHDOG` starts); every other blocking call in `body` fails the test. A stall of
/// the pool is expected with `expectStall(threshold:timesEveryJob:sourceLocation:_:)`.
///
/// - Parameters:
///   - operation: The blocking call expected, by the name its report gives (the name passed to
///     `Blocking/call(_:policy:fileID:line:_:)`, `waitForAsync`, `GuardedSemaphore(name).wait`);
///     `nil` for any.
///   - sourceLocation: Where failures are reported; leave the default.
///   - body: The code expected to make the call.
/// - Returns: The first report of the call; `nil` (and the test fails) when none arrived.
/// - Throws: What `body` throws, except the refusal of a blocking call (`BlockingCallError`,
///   `GuardedWaitError`) when the expected call was reported.
@discardableResult
public func expectBlockingCall(
    _ operation: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @Sendable () async throws -> Void
) async throws -> WatchdogReport? {
    try await ExpectedReports.blockingCall(operation, body)
        .settle { Issue.record(Comment(rawValue: $0), sourceLocation: sourceLocation) }
}

/// Runs `body` expecting it to stall a band of Swift's cooperative pool — to keep every thread of
/// the band busy or blocked for longer than `threshold` — and returns the watchdog's report of
/// the stall: a test that keeps a legacy call that blocks without saying so (a C library's
/// `read`, a `sleep`) flagged until it is moved off the pool.
///
/// ```swift
/// @Test(.watchdog())
/// func legacyExportStillStallsThePool() async throws {
///     let report = try await expectStall(threshold: .milliseconds(50)) {
///         try await legacyExporter.exportAll()   // C calls that block every cooperative thread
///     }
///     #expect(report?.containsFrame("legacy_export") == true)
/// }
/// ```
///
/// A stall cannot be attributed to a task, so `body` runs in the watchdog trait's turn (tests
/// that carry `.watchdog()` or call these helpers run one at a time), under a watchdog of its
/// own, and the stalls that begin while `body` runs belong to it: they do not fail the test under
/// a `.watchdog()` trait and reach no other watchdog (such as one `SYNCBRIDGE_WATCHDOG` starts);
/// stalls that begin before or after `body` still do. A blocking call that `body` makes on a cooperative
/// thread fails the test. As with the trait, a test without it that runs in parallel and blocks
/// the pool can cause the stall expected here: keep code that blocks on purpose in tests that
/// carry the trait.
///
/// The watchdog reports a stall only when it is sure: a band whose threads waited for a CPU, or
/// kept running different tasks, is not stalled, so on a heavily loaded machine an expected stall
/// can go unreported. Block for several thresholds, and run such tests on a quiet machine.
///
/// - Parameters:
///   - threshold: How long a band may go without running a task. Default 100 ms.
///   - timesEveryJob: Per-job mode (see `Watchdog/Configuration/timesEveryJob`): one job that
///     runs longer than `threshold` is expected, reported even while other threads are free.
///     Default `false`.
///   - sourceLocation: Where failures are reported; leave the default.
///   - body: The code expected to stall the pool.
/// - Returns: The first report of a stall (or, in per-job mode, of a slow job), taken while it
///   lasted, with the stacks of the threads involved; `nil` (and the test fails) when none
///   arrived.
/// - Throws: What `body` throws.
@discardableResult
public func expectStall(
    threshold: Duration = .milliseconds(100),
    timesEveryJob: Bool = false,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @Sendable () async throws -> Void
) async throws -> WatchdogReport? {
    try await ExpectedReports.stall(threshold: threshold, timesEveryJob: timesEveryJob, body)
        .settle { Issue.record(Comment(rawValue: $0), sourceLocation: sourceLocation) }
}

/// What the expectation helpers of both test libraries share: running the body in a scope of its
/// own, and judging what came back.
package enum ExpectedReports {
    /// What an expectation concluded: the report expected, the failures to record, and the error
    /// to rethrow.
    package struct Outcome<Report> {
        package var report: Report?
        package var failures: [String]
        package var rethrown: (any Error)?

        /// Records each failure with `record`, then rethrows what must be, or returns the report.
        package func settle(recording record: (String) -> Void) throws -> Report? {
            failures.forEach(record)
            if let rethrown { throw rethrown }
            return report
        }
    }

    /// Runs `body` expecting a deadlock report of `pattern`, and judges what came back.
    package static func deadlockReport(
        _ pattern: DeadlockPattern,
        mode: DeadlockDetector.Mode,
        stuckWaitThreshold: Duration,
        _ body: @Sendable () async throws -> Void
    ) async throws -> Outcome<DeadlockReport> {
        let (reports, error) = try await deadlockReports(mode: mode, stuckWaitThreshold: stuckWaitThreshold, body)
        return judge(reports, expecting: pattern, error: error)
    }

    /// Runs `body` expecting a blocking call (`operation`, or any), and judges what came back.
    package static func blockingCall(
        _ operation: String?,
        _ body: @Sendable () async throws -> Void
    ) async throws -> Outcome<WatchdogReport> {
        let (reports, error) = try await blockingCalls(body)
        return judge(reports, expecting: operation, error: error)
    }

    /// Runs `body` expecting a stall (or, with `timesEveryJob`, a slow job), and judges what came
    /// back.
    package static func stall(
        threshold: Duration,
        timesEveryJob: Bool,
        _ body: @Sendable () async throws -> Void
    ) async throws -> Outcome<WatchdogReport> {
        let expected: WatchdogReport.Kind = timesEveryJob ? .slowJob : .stall
        let (reports, error) = try await WatchdogScope.exclusively {
            let thrown = Locked<(any Error)?>(nil)
            let reports = ReportList()
            let scope = WatchdogScope.next()
            await WatchdogScope.claimingStalls(scope) {
                let watchdog = Watchdog(
                    configuration: .init(threshold: threshold, onReport: reports.append, timesEveryJob: timesEveryJob),
                    scope: scope
                )
                watchdog.start()
                do {
                    try await WatchdogScope.run(scope, timingJobs: timesEveryJob, body)
                } catch {
                    thrown.withLock { $0 = error }
                }
                await watchdog.shutdown()
            }
            return (reports.all, thrown.withLock { $0 })
        }
        return judge(reports, expecting: expected, threshold: threshold, error: error)
    }

    /// Runs `body` under a detector and a silent watchdog of a new scope; returns the detector's
    /// reports and what `body` threw.
    package static func deadlockReports(
        mode: DeadlockDetector.Mode,
        stuckWaitThreshold: Duration,
        _ body: @Sendable () async throws -> Void
    ) async throws -> ([DeadlockReport], (any Error)?) {
        let thrown = Locked<(any Error)?>(nil)
        // Refused waits are blocking calls too: the scope's own watchdog keeps them from every
        // other watchdog.
        let scope = WatchdogScope.next()
        let watchdog = Watchdog(configuration: .init(bands: []), scope: scope)
        watchdog.start()
        let reports = try await DeadlockDetectorTrait.collectReports(
            mode: mode,
            stuckWaitThreshold: stuckWaitThreshold,
            inScope: scope
        ) {
            do { try await body() } catch { thrown.withLock { $0 = error } }
        }
        await watchdog.shutdown()
        return (reports, thrown.withLock { $0 })
    }

    /// Runs `body` with a watchdog of a new scope that watches no band; returns its blocking-call
    /// reports and what `body` threw.
    package static func blockingCalls(
        _ body: @Sendable () async throws -> Void
    ) async throws -> ([WatchdogReport], (any Error)?) {
        let thrown = Locked<(any Error)?>(nil)
        let reports = ReportList()
        let scope = WatchdogScope.next()
        let watchdog = Watchdog(configuration: .init(bands: [], onReport: reports.append), scope: scope)
        watchdog.start()
        await WatchdogScope.$current.withValue(scope) {
            do { try await body() } catch { thrown.withLock { $0 = error } }
        }
        await watchdog.shutdown()
        // A call that carries no scope (on another test's event loop thread) reaches every
        // watchdog: only this scope's calls are this expectation's.
        return (reports.all.filter { $0.kind == .blockingCall && $0.scopeID == scope }, thrown.withLock { $0 })
    }

    /// The deadlock reports judged against `pattern`.
    package static func judge(
        _ reports: [DeadlockReport],
        expecting pattern: DeadlockPattern,
        error: (any Error)?
    ) -> Outcome<DeadlockReport> {
        let expected = reports.first { $0.pattern == pattern }
        var failures = reports.filter { $0.pattern != pattern }.map(\.description)
        if expected == nil {
            let seen = reports.isEmpty ? "nothing" : reports.map(\.pattern.name).joined(separator: ", ")
            failures.append("expected a deadlock report of pattern \(pattern); the detector reported \(seen)")
        }
        let isRefusal = error is DeadlockError || error is GuardedWaitError
        let rethrown = expected != nil && isRefusal ? nil : error
        return Outcome(report: expected, failures: failures, rethrown: rethrown)
    }

    /// The reports of a stall expectation judged: the first of kind `expected` is the one
    /// expected (the others of that kind are the same stall's later reports, or more of what was
    /// expected); every blocking call is a failure. `error` is always rethrown.
    package static func judge(
        _ reports: [WatchdogReport],
        expecting expected: WatchdogReport.Kind,
        threshold: Duration,
        error: (any Error)?
    ) -> Outcome<WatchdogReport> {
        let report = reports.first { $0.kind == expected }
        var failures = reports.filter { $0.kind == .blockingCall }.map(\.description)
        if report == nil {
            let wanted =
                expected == .slowJob
                ? "a job running longer than \(WatchdogReport.milliseconds(threshold))"
                : "a stall of Swift's cooperative pool longer than \(WatchdogReport.milliseconds(threshold))"
            failures.append("expected \(wanted); the watchdog reported none")
        }
        return Outcome(report: report, failures: failures, rethrown: error)
    }

    /// The blocking-call reports judged against `operation` (`nil`: any).
    package static func judge(
        _ reports: [WatchdogReport],
        expecting operation: String?,
        error: (any Error)?
    ) -> Outcome<WatchdogReport> {
        let matches = { (report: WatchdogReport) in operation == nil || report.operation == operation }
        let expected = reports.first(where: matches)
        var failures = reports.filter { !matches($0) }.map(\.description)
        if expected == nil {
            let wanted = operation.map { "the blocking call \($0)" } ?? "a blocking call"
            let seen =
                reports.isEmpty
                ? "nothing" : reports.map { $0.operation ?? "a blocking call" }.joined(separator: ", ")
            failures.append("expected \(wanted) on a cooperative thread; the watchdog reported \(seen)")
        }
        let isRefusal = error is BlockingCallError || error is GuardedWaitError
        let rethrown = expected != nil && isRefusal ? nil : error
        return Outcome(report: expected, failures: failures, rethrown: rethrown)
    }
}
