import Foundation
import SyncBridge
import SyncBridgeTesting
import Testing
import XCTest

/// Takes `first` then `second`, then (in another task, later) `second` then `first`: a lock-order
/// inversion, without any hang.
func takeInBothOrders(_ first: AsyncMutex<Int>, _ second: AsyncMutex<Int>) async throws {
    try await Task {
        try await first.withLock { _ in try await second.withLock { $0 += 1 } }
    }.value
    try await Task {
        try await second.withLock { _ in try await first.withLock { $0 += 1 } }
    }.value
}

/// A legacy lookup that blocks its thread, as teams mark them.
func legacyLookup() throws -> Int {
    try Blocking.call("legacyLookup") {
        usleep(1_000)
        return 42
    }
}

@Suite("Expecting a report: the expected one passes, a missing or different one fails, any other still fails")
struct ExpectedReportTests {
    @Test(
        "a lock inversion that a migration step must keep flagged: expectDeadlockReport returns the report, and the test's own detector sees nothing",
        .deadlockDetector(mode: .throwError, stuckWaitThreshold: .seconds(5 * slowdown))
    )
    func expectedInversionPasses() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let stock = AsyncMutex(0, lockClass: "expect-stock-\(suffix)")
        let orders = AsyncMutex(0, lockClass: "expect-orders-\(suffix)")
        let report = try await expectDeadlockReport(.lockOrderInversion) {
            try await takeInBothOrders(stock, orders)
        }
        let inversion = try #require(report)
        #expect(inversion.headline.contains("expect-stock-\(suffix)"))
        #expect(inversion.headline.contains("expect-orders-\(suffix)"))
        #expect(inversion.chain.compactMap(\.callSite).count == 4)
        #expect(try await stock.withLock { $0 } == 1)
        #expect(try await orders.withLock { $0 } == 1)
    }

    @Test(
        "a legacy call that blocks the cooperative pool: expectBlockingCall returns the watchdog's report with its call site"
    )
    func expectedBlockingCallPasses() async throws {
        let report = try await expectBlockingCall("legacyLookup") {
            let value = try legacyLookup()
            #expect(value == 42)
        }
        let call = try #require(report)
        #expect(call.kind == .blockingCall)
        #expect(call.operation == "legacyLookup")
        #expect(call.callSite?.hasPrefix("SyncBridgeTestingTests/ExpectedReportTests.swift:") == true)
    }

    @Test("a missing report fails the test, naming the pattern expected and what was seen")
    func missingReportFails() async throws {
        let issues = Locked<[String]>([])
        try await withKnownIssue {
            let report = try await expectDeadlockReport(.waitCycle) {}
            #expect(report == nil)
            let call = try await expectBlockingCall("legacyLookup") {}
            #expect(call == nil)
        } matching: { issue in
            issues.withLock { $0 += issue.comments.map(\.rawValue) }
            return true
        }
        #expect(
            issues.current == [
                "expected a deadlock report of pattern wait-cycle; the detector reported nothing",
                "expected the blocking call legacyLookup on a cooperative thread; the watchdog reported nothing",
            ]
        )
    }

    @Test("a report of another pattern fails the test with that report, and as a missing one")
    func differentReportFails() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let left = AsyncMutex(0, lockClass: "expect-left-\(suffix)")
        let right = AsyncMutex(0, lockClass: "expect-right-\(suffix)")
        let issues = Locked<[String]>([])
        try await withKnownIssue {
            let report = try await expectDeadlockReport(.waitCycle) {
                try await takeInBothOrders(left, right)
            }
            #expect(report == nil)
        } matching: { issue in
            issues.withLock { $0 += issue.comments.map(\.rawValue) }
            return true
        }
        let seen = issues.current
        #expect(seen.count == 2)
        #expect(
            seen.contains { $0.hasPrefix("DEADLOCK (lock-order-inversion)") && $0.contains("expect-left-\(suffix)") }
        )
        #expect(
            seen.contains(
                "expected a deadlock report of pattern wait-cycle; the detector reported lock-order-inversion"
            )
        )
    }

    @Test(
        "under the detector trait, the expected report passes while an unexpected one outside the helper still fails the test"
    )
    func unexpectedReportStillFails() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let trait = DeadlockDetectorTrait.deadlockDetector(
            mode: .throwError,
            stuckWaitThreshold: .seconds(5 * slowdown)
        )
        let expectedFirst = AsyncMutex(0, lockClass: "expected-a-\(suffix)")
        let expectedSecond = AsyncMutex(0, lockClass: "expected-b-\(suffix)")
        let strayFirst = AsyncMutex(0, lockClass: "stray-a-\(suffix)")
        let straySecond = AsyncMutex(0, lockClass: "stray-b-\(suffix)")
        let issues = Locked<[String]>([])
        let expected = Locked<DeadlockReport?>(nil)
        try await withKnownIssue {
            try await trait.provideScope(for: Test.current!, testCase: Test.Case.current) {
                let report = try await expectDeadlockReport(.lockOrderInversion) {
                    try await takeInBothOrders(expectedFirst, expectedSecond)
                }
                expected.withLock { $0 = report }
                try await takeInBothOrders(strayFirst, straySecond)
            }
        } matching: { issue in
            issues.withLock { $0 += issue.comments.map(\.rawValue) }
            return true
        }
        #expect(expected.current?.headline.contains("expected-a-\(suffix)") == true)
        let seen = issues.current
        #expect(seen.count == 1, "\(seen)")
        #expect(seen.first?.contains("stray-a-\(suffix)") == true)
        #expect(!seen.contains { $0.contains("expected-a-\(suffix)") })
    }

    @Test(
        "under the watchdog trait, the expected blocking call passes; another call inside the helper, and one after it, still fail the test"
    )
    func unexpectedBlockingCallsStillFail() async throws {
        // Blocking calls only: a high threshold keeps stalls of other tests out.
        let trait = WatchdogTrait.watchdog(threshold: .seconds(5 * slowdown))
        let issues = Locked<[String]>([])
        let expected = Locked<WatchdogReport?>(nil)
        try await withKnownIssue {
            try await trait.provideScope(for: Test.current!, testCase: Test.Case.current) {
                let report = try await expectBlockingCall("legacyLookup") {
                    _ = try legacyLookup()
                    try Blocking.call("legacyAudit") { _ = usleep(1_000) }
                }
                expected.withLock { $0 = report }
                try Blocking.call("legacyStray") { _ = usleep(1_000) }
            }
        } matching: { issue in
            issues.withLock { $0 += issue.comments.map(\.rawValue) }
            return true
        }
        #expect(expected.current?.operation == "legacyLookup")
        let seen = issues.current
        #expect(seen.count == 2, "\(seen)")
        #expect(seen.contains { $0.contains("blocking call legacyAudit") })
        #expect(seen.contains { $0.contains("blocking call legacyStray") })
        #expect(!seen.contains { $0.contains("blocking call legacyLookup") })
    }

    @Test("in throw mode the refusal the expected report causes is the expected outcome; any other error is rethrown")
    func refusalIsExpectedOtherErrorsAreNot() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let mutex = AsyncMutex(0, lockClass: "expect-cycle-\(suffix)")
        let pool = BlockingPool(name: "sb-expect-cycle", threadCount: 1)
        // Legacy code on the pool waits for async work that needs the mutex this task holds.
        // (Under ThreadSanitizer a busy run can leave the awaited task unscheduled for longer
        // than the default 5 s stuck-wait threshold.)
        let report = try await expectDeadlockReport(.waitCycle, stuckWaitThreshold: .seconds(5 * slowdown)) {
            try await mutex.withLock { _ in
                let waited = try await pool.run {
                    Result { try waitForAsync { try await mutex.withLock { $0 } } }
                }
                _ = try waited.get()
            }
        }
        #expect(report?.thrown == true)
        // The expected report arrived, but the body also failed for a reason of its own.
        struct Unrelated: Error {}
        let first = AsyncMutex(0, lockClass: "expect-unrelated-a-\(suffix)")
        let second = AsyncMutex(0, lockClass: "expect-unrelated-b-\(suffix)")
        await #expect(throws: Unrelated.self) {
            try await expectDeadlockReport(.lockOrderInversion) {
                try await takeInBothOrders(first, second)
                throw Unrelated()
            }
        }
        await pool.shutdownGracefully()
    }
}

final class ExpectedReportXCTests: XCTestCase {
    func testAssertDeadlockReportReturnsTheExpectedInversion() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let first = AsyncMutex(0, lockClass: "xct-a-\(suffix)")
        let second = AsyncMutex(0, lockClass: "xct-b-\(suffix)")
        let report = try await assertDeadlockReport(.lockOrderInversion) {
            try await takeInBothOrders(first, second)
        }
        XCTAssertEqual(report?.pattern, .lockOrderInversion)
        XCTAssertEqual(report?.headline.contains("xct-a-\(suffix)"), true)
    }

    func testAssertBlockingCallReturnsTheLegacyCall() async throws {
        let report = try await assertBlockingCall("legacyLookup") {
            let value = try legacyLookup()
            XCTAssertEqual(value, 42)
        }
        XCTAssertEqual(report?.operation, "legacyLookup")
    }
}
