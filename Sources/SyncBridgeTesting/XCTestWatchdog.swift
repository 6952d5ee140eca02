public import SyncBridge
public import XCTest

extension XCTestCase {
    /// Runs `body` under a `Watchdog` and fails the test with each report: a band of Swift's
    /// cooperative pool (or one of `eventLoops`) blocked past `threshold`, a blocking call made on
    /// a cooperative or event loop thread in `body`'s tasks, or (with `timesEveryJob`) one job
    /// that ran past `threshold`. The XCTest counterpart of the `.watchdog()` trait; calls run
    /// one at a time across the process.
    ///
    /// ```swift
    /// func testRefreshDoesNotBlock() async throws {
    ///     try await assertNoCooperativeBlocking(threshold: .milliseconds(50)) {
    ///         try await cache.refresh()
    ///     }
    /// }
    /// ```
    ///
    /// An XCTVapor test passes the application's group, so that a route that blocks its loop fails
    /// the test: `eventLoops: app.eventLoopGroup.watchdogTargets` (`SyncBridgeNIO`).
    ///
    /// - Parameters:
    ///   - threshold: The longest a band (or loop) may go without running a task. Default 100 ms.
    ///   - timesEveryJob: Also times every single job. Default `false`.
    ///   - eventLoops: Event loops to watch too. Default none.
    ///   - file: Where failures are reported; leave the default.
    ///   - line: Where failures are reported; leave the default.
    ///   - body: The code under test.
    /// - Returns: The reports, which have already failed the test.
    @discardableResult
    public func assertNoCooperativeBlocking(
        threshold: Duration = .milliseconds(100),
        timesEveryJob: Bool = false,
        eventLoops: [any WatchdogTarget] = [],
        file: StaticString = #filePath,
        line: UInt = #line,
        _ body: @Sendable () async throws -> Void
    ) async throws -> [WatchdogReport] {
        let reports = try await WatchdogScope.exclusively {
            try await WatchdogTrait.collectReports(
                threshold: threshold,
                timesEveryJob: timesEveryJob,
                eventLoops: eventLoops,
                body
            )
        }
        for report in reports {
            XCTFail(report.description, file: file, line: line)
        }
        return reports
    }

    /// Runs `body` expecting the deadlock detector to report `pattern`, and returns that report;
    /// the XCTest counterpart of `expectDeadlockReport(_:mode:stuckWaitThreshold:sourceLocation:_:)`.
    ///
    /// ```swift
    /// func testLegacyReserveStillLeasesTwice() async throws {
    ///     let report = try await assertDeadlockReport(.nestedPoolLease) {
    ///         try await legacyStock.reserve(item)
    ///     }
    ///     XCTAssertEqual(report?.chain.count, 4)
    /// }
    /// ```
    ///
    /// `body` runs under a detector of its own scope; the test fails when no report of `pattern`
    /// arrives, and with every report of another pattern. The refusal the expected report causes
    /// (`DeadlockError`, `GuardedWaitError`) is not rethrown; any other error is.
    ///
    /// - Parameters:
    ///   - pattern: The report expected.
    ///   - mode: The detector's mode while `body` runs; throw mode (the default) ends the
    ///     deadlocked wait.
    ///   - stuckWaitThreshold: For stuck waits: how long a wait may last.
    ///   - file: Where failures are reported; leave the default.
    ///   - line: Where failures are reported; leave the default.
    ///   - body: The code expected to cause the report.
    /// - Returns: The first report of `pattern`, or `nil` (and the test fails).
    /// - Throws: What `body` throws, except the refusal the expected report causes.
    @discardableResult
    public func assertDeadlockReport(
        _ pattern: DeadlockPattern,
        mode: DeadlockDetector.Mode = .throwError,
        stuckWaitThreshold: Duration = .seconds(5),
        file: StaticString = #filePath,
        line: UInt = #line,
        _ body: @Sendable () async throws -> Void
    ) async throws -> DeadlockReport? {
        try await ExpectedReports.deadlockReport(pattern, mode: mode, stuckWaitThreshold: stuckWaitThreshold, body)
            .settle { XCTFail($0, file: file, line: line) }
    }

    /// Runs `body` expecting a blocking call on a cooperative thread (by its operation name, or any
    /// when `nil`), and returns the watchdog's report of it; the XCTest counterpart of
    /// `expectBlockingCall(_:sourceLocation:_:)`. Every other blocking call in `body` fails the
    /// test.
    ///
    /// - Parameters:
    ///   - operation: The blocking call expected, by the name its report gives; `nil` for any.
    ///   - file: Where failures are reported; leave the default.
    ///   - line: Where failures are reported; leave the default.
    ///   - body: The code expected to make the call.
    /// - Returns: The first report of the call, or `nil` (and the test fails).
    /// - Throws: What `body` throws, except the refusal of the expected call.
    @discardableResult
    public func assertBlockingCall(
        _ operation: String? = nil,
        file: StaticString = #filePath,
        line: UInt = #line,
        _ body: @Sendable () async throws -> Void
    ) async throws -> WatchdogReport? {
        try await ExpectedReports.blockingCall(operation, body).settle { XCTFail($0, file: file, line: line) }
    }

    /// Runs `body` expecting it to stall a band of Swift's cooperative pool for longer than
    /// `threshold` (or, with `timesEveryJob`, to run one job that long), and returns the
    /// watchdog's report of it; the XCTest counterpart of
    /// `expectStall(threshold:timesEveryJob:sourceLocation:_:)`.
    ///
    /// ```swift
    /// func testLegacyExportStillStallsThePool() async throws {
    ///     let report = try await assertStall(threshold: .milliseconds(50)) {
    ///         try await legacyExporter.exportAll()
    ///     }
    ///     XCTAssertTrue(report?.containsFrame("legacy_export") == true)
    /// }
    /// ```
    ///
    /// `body` runs in the turn that `assertNoCooperativeBlocking` takes (one at a time across the
    /// process, or at once inside it), under a watchdog of its own; the stalls that begin while
    /// `body` runs belong to it and reach no other watchdog. The test fails when no stall is reported, and
    /// with every blocking call `body` makes on a cooperative thread.
    ///
    /// - Parameters:
    ///   - threshold: How long a band may go without running a task. Default 100 ms.
    ///   - timesEveryJob: Per-job mode: one job longer than `threshold` is expected. Default
    ///     `false`.
    ///   - file: Where failures are reported; leave the default.
    ///   - line: Where failures are reported; leave the default.
    ///   - body: The code expected to stall the pool.
    /// - Returns: The first report of the stall (or slow job), or `nil` (and the test fails).
    /// - Throws: What `body` throws.
    @discardableResult
    public func assertStall(
        threshold: Duration = .milliseconds(100),
        timesEveryJob: Bool = false,
        file: StaticString = #filePath,
        line: UInt = #line,
        _ body: @Sendable () async throws -> Void
    ) async throws -> WatchdogReport? {
        try await ExpectedReports.stall(threshold: threshold, timesEveryJob: timesEveryJob, body)
            .settle { XCTFail($0, file: file, line: line) }
    }
}
