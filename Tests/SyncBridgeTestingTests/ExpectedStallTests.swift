import Foundation
import SyncBridge
import SyncBridgeTesting
import Testing
import XCTest

/// Whether this is the pass of its own that stall reports need (see `Scripts/test.sh`).
let isSoloPass = ProcessInfo.processInfo.environment["SYNCBRIDGE_SOLO_TESTS"] == "1"

// A stall is reported only on a machine other tests do not load (the watchdog counts a band
// whose threads waited for a CPU as starvation), and not under ThreadSanitizer: these tests run
// in the solo pass.
@Suite(
    "Expecting a stall: the expected one passes, a missing one fails, any other report still fails",
    .enabled(
        if: isSoloPass,
        "stall reports need a machine other tests do not load: SYNCBRIDGE_SOLO_TESTS=1 swift test --filter Solo"
    ),
    .enabled(if: slowdown == 1, "waits for stall reports: runs in the passes without ThreadSanitizer")
)
struct ExpectedStallTests {
    @Test(
        "a legacy call that blocks a whole band: expectStall returns the stall with the blocked stacks, and the test's own watchdog trait sees nothing"
    )
    func testSoloExpectedStallPasses() async throws {
        let trait = WatchdogTrait.watchdog(threshold: .milliseconds(50))
        let expected = Locked<WatchdogReport?>(nil)
        // Any report that reaches the trait is an issue, and fails this test.
        try await trait.provideScope(for: Test.current!, testCase: Test.Case.current) {
            let report = try await expectStall(threshold: .milliseconds(50)) {
                await blockUtilityBand(milliseconds: 300)
            }
            expected.withLock { $0 = report }
        }
        let stall = try #require(expected.current)
        #expect(stall.kind == .stall)
        #expect(stall.isOngoing)
        #expect(stall.duration > .milliseconds(50))
        #expect(stall.containsFrame("usleep"), "\(stall)")
    }

    @Test("a stall that began before the helper still reaches the test's watchdog, and only that one")
    func testSoloStrayStallStillFails() async throws {
        let mark = Locked<Date?>(nil)
        let expected = Locked<WatchdogReport?>(nil)
        // The trait's own collection, which returns the reports it would record as issues.
        let reports = try await WatchdogScope.exclusively {
            try await WatchdogTrait.collectReports(threshold: .milliseconds(50), timesEveryJob: false) {
                await blockUtilityBand(milliseconds: 300)
                mark.withLock { $0 = Date() }
                let report = try await expectStall(threshold: .milliseconds(50)) {
                    await blockUtilityBand(milliseconds: 300)
                }
                expected.withLock { $0 = report }
            }
        }
        let between = try #require(mark.current)
        #expect(expected.current?.kind == .stall)
        #expect(expected.current.map { $0.startedAt > between - 0.05 } == true)
        // The stray stall is reported (while it lasted, and at its end); nothing of the expected one.
        #expect(!reports.isEmpty)
        #expect(reports.allSatisfy { $0.kind == .stall && $0.startedAt < between }, "\(reports)")
    }

    @Test("no stall fails the test, saying what was expected; a blocking call inside the helper fails it too")
    func testSoloMissingStallAndBlockingCallFail() async throws {
        let issues = Locked<[String]>([])
        try await withKnownIssue {
            let missing = try await expectStall(threshold: .milliseconds(100)) {}
            #expect(missing == nil)
            let stall = try await expectStall(threshold: .milliseconds(50)) {
                await blockUtilityBand(milliseconds: 300)
                let value = try legacyLookup()
                #expect(value == 42)
            }
            #expect(stall?.kind == .stall)
        } matching: { issue in
            issues.withLock { $0 += issue.comments.map(\.rawValue) }
            return true
        }
        let seen = issues.current
        #expect(seen.count == 2, "\(seen)")
        #expect(
            seen.first
                == "expected a stall of Swift's cooperative pool longer than 100 ms; the watchdog reported none"
        )
        #expect(seen.last?.contains("blocking call legacyLookup") == true, "\(seen)")
    }

    @Test("in per-job mode, one slow job is the expected report although other threads are free")
    func testSoloExpectedSlowJob() async throws {
        let report = try await expectStall(threshold: .milliseconds(50), timesEveryJob: true) {
            await Task.detached {
                let end = ContinuousClock.now + .milliseconds(200)
                while ContinuousClock.now < end { _ = usleep(10_000) }
            }.value
        }
        let slowJob = try #require(report)
        #expect(slowJob.kind == .slowJob)
        #expect(slowJob.containsFrame("usleep"), "\(slowJob)")
    }
}

/// The XCTest helper, in the solo pass too.
final class ExpectedStallXCTests: XCTestCase {
    func testSoloAssertStallReturnsTheStall() async throws {
        try XCTSkipUnless(isSoloPass && slowdown == 1, "runs in the solo pass without ThreadSanitizer")
        let report = try await assertStall(threshold: .milliseconds(50)) {
            await blockUtilityBand(milliseconds: 300)
        }
        XCTAssertEqual(report?.kind, .stall)
        XCTAssertEqual(report?.containsFrame("usleep"), true)
    }
}
