public import SyncBridge
public import XCTest

extension XCTestCase {
    /// Runs `body` under a `Watchdog` and fails the test with each report: a band of Swift's
    /// cooperative pool blocked past `threshold`, a blocking call made on a cooperative thread in
    /// `body`'s tasks, or (with `timesEveryJob`) one job that ran past `threshold`. The XCTest
    /// counterpart of the `.watchdog()` trait; calls run one at a time across the process.
    ///
    /// ```swift
    /// func testRefreshDoesNotBlock() async throws {
    ///     try await assertNoCooperativeBlocking(threshold: .milliseconds(50)) {
    ///         try await cache.refresh()
    ///     }
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - threshold: The longest a band may go without running a task. Default 100 ms.
    ///   - timesEveryJob: Also times every single job. Default `false`.
    ///   - file: Where failures are reported; leave the default.
    ///   - line: Where failures are reported; leave the default.
    ///   - body: The code under test.
    /// - Returns: The reports, which have already failed the test.
    @discardableResult
    public func assertNoCooperativeBlocking(
        threshold: Duration = .milliseconds(100),
        timesEveryJob: Bool = false,
        file: StaticString = #filePath,
        line: UInt = #line,
        _ body: @Sendable () async throws -> Void
    ) async throws -> [WatchdogReport] {
        let reports = try await WatchdogScope.exclusively {
            try await WatchdogTrait.collectReports(threshold: threshold, timesEveryJob: timesEveryJob, body)
        }
        for report in reports {
            XCTFail(report.description, file: file, line: line)
        }
        return reports
    }
}
