import Foundation
import SyncBridge
import SyncBridgeTesting
import Testing
import XCTest

/// How much slower than normal this process runs: 10 under ThreadSanitizer, 1 otherwise.
let slowdown: Int64 = dlsym(dlopen(nil, RTLD_NOW), "__tsan_init") != nil ? 10 : 1

/// Blocks every thread of the utility band for `milliseconds` (sleeping again when a stack
/// sample's signal interrupts the sleep).
func blockUtilityBand(milliseconds: Int) async {
    let width = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    await Task.detached(priority: .utility) {
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<width {
                group.addTask(priority: .utility) {
                    let end = ContinuousClock.now + .milliseconds(milliseconds)
                    while ContinuousClock.now < end { _ = usleep(10_000) }
                }
            }
        }
    }.value
}

@Suite("The watchdog trait")
struct WatchdogTraitTests {
    // Expects no report. Tests without the trait run beside this one and keep the default band
    // busy for tens of milliseconds at times (ten times longer under ThreadSanitizer), so the
    // threshold is 250 ms, and the offloaded calls block for 600 ms: on the cooperative pool they
    // would stall it well past the threshold.
    // Not under ThreadSanitizer: its runtime stops the process's threads while it symbolizes a
    // report, suppressed ones included (seen: every cooperative thread in its `bcmp` interceptor
    // for 17 s beside the whole suite), which no threshold tells from blocking.
    @Test(
        "a test that offloads its blocking work passes under the trait",
        .enabled(if: slowdown == 1, "ThreadSanitizer's own pauses stall the pool"),
        .watchdog(threshold: .milliseconds(250 * slowdown))
    )
    func offloadedWorkPasses() async throws {
        let pool = BlockingPool(name: "sb-trait", threadCount: 4)
        await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 { group.addTask { try await pool.run { _ in _ = usleep(UInt32(600_000 * slowdown)) } } }
        }
        await pool.shutdownGracefully()
    }

    @Test("a test that makes a blocking call on a cooperative thread fails with the report")
    func blockingCallFails() async throws {
        // Only the blocking call matters here: a high threshold keeps stalls of other tests out.
        let trait = WatchdogTrait.watchdog(threshold: .seconds(5))
        try await withKnownIssue {
            try await trait.provideScope(for: Test.current!, testCase: Test.Case.current) {
                try Blocking.call("legacyFetch") { _ = usleep(1_000) }
            }
        } matching: { issue in
            issue.comments.contains {
                $0.rawValue.contains("blocking call legacyFetch") && $0.rawValue.contains("WatchdogTraitTests.swift")
            }
        }
    }

    // Runs in the pass of its own: beside the whole suite, the blocked band's probes sometimes
    // wait for a CPU or for a thread of the shared limit, and the watchdog rightly counts that as
    // starvation instead of reporting a stall (seen once in CI).
    @Test(
        "a test that blocks a whole band fails with the stall and the blocked stacks",
        .enabled(
            if: ProcessInfo.processInfo.environment["SYNCBRIDGE_SOLO_TESTS"] == "1",
            "a stall report needs a machine other tests do not load: SYNCBRIDGE_SOLO_TESTS=1 swift test --filter Solo"
        ),
        .enabled(if: slowdown == 1, "waits for a stall report: runs in the passes without ThreadSanitizer")
    )
    func testSoloStallFails() async throws {
        let seen = Locked<[String]>([])
        let trait = WatchdogTrait.watchdog(threshold: .milliseconds(50))
        try await withKnownIssue {
            try await trait.provideScope(for: Test.current!, testCase: Test.Case.current) {
                await blockUtilityBand(milliseconds: 300)
            }
        } matching: { issue in
            let text = issue.comments.map(\.rawValue).joined()
            seen.withLock { $0.append(text) }
            // Awaiting the blocking tasks escalates them to the waiter's band: match any band.
            return text.contains("Swift's cooperative pool (band")
        }
        // The report made while the band was blocked carries the blocked threads' stacks.
        #expect(
            seen.current.contains { $0.contains("its threads are blocked") && $0.contains("usleep") },
            "\(seen.current)"
        )
    }

    @Test(
        "with timesEveryJob, one slow job fails the test although other threads are free",
        .enabled(
            if: ProcessInfo.processInfo.environment["SYNCBRIDGE_SOLO_TESTS"] == "1",
            "per-job mode takes over every job of the process; it runs in a pass of its own: SYNCBRIDGE_SOLO_TESTS=1 swift test --filter Solo"
        )
    )
    func testSoloPerJobSlowJobFails() async throws {
        let seen = Locked<[String]>([])
        let trait = WatchdogTrait.watchdog(threshold: .milliseconds(50), timesEveryJob: true)
        try await withKnownIssue {
            try await trait.provideScope(for: Test.current!, testCase: Test.Case.current) {
                await Task.detached {
                    let end = ContinuousClock.now + .milliseconds(200)
                    while ContinuousClock.now < end { _ = usleep(10_000) }
                }.value
            }
        } matching: { issue in
            let text = issue.comments.map(\.rawValue).joined()
            seen.withLock { $0.append(text) }
            return text.contains("one job")
        }
        #expect(seen.current.contains { $0.contains("has run") && $0.contains("usleep") }, "\(seen.current)")
    }

    @Test(
        "with timesEveryJob, a test that blocks before its first suspension fails too",
        .enabled(
            if: ProcessInfo.processInfo.environment["SYNCBRIDGE_SOLO_TESTS"] == "1",
            "per-job mode takes over every job of the process; it runs in a pass of its own: SYNCBRIDGE_SOLO_TESTS=1 swift test --filter Solo"
        )
    )
    func testSoloPerJobBlockingBeforeAnySuspensionFails() async throws {
        // The test's task runs on a cooperative thread it reached before the trait's watchdog
        // started: the body must not stay there, where no job is timed (the samples' legacy
        // handler, whose servers were already up, once passed that way).
        let seen = Locked<[String]>([])
        let trait = WatchdogTrait.watchdog(threshold: .milliseconds(50), timesEveryJob: true)
        try await withKnownIssue {
            try await trait.provideScope(for: Test.current!, testCase: Test.Case.current) {
                let end = ContinuousClock.now + .milliseconds(200)
                while ContinuousClock.now < end { _ = usleep(10_000) }
            }
        } matching: { issue in
            let text = issue.comments.map(\.rawValue).joined()
            seen.withLock { $0.append(text) }
            return text.contains("one job")
        }
        #expect(seen.current.contains { $0.contains("has run") && $0.contains("usleep") }, "\(seen.current)")
    }

    @Test(
        "blocking calls of other tests running in parallel are not counted against this one",
        .enabled(if: slowdown == 1, "ThreadSanitizer's own pauses (its bcmp interceptor, 5 s) stall the pool")
    )
    func attribution() async throws {
        let trait = WatchdogTrait.watchdog(threshold: .seconds(5))
        let outsider = Task.detached {
            // Outside any watchdog scope, as a test without the trait running in parallel.
            for _ in 0..<20 {
                try Blocking.call("outsider") { _ = usleep(1_000) }
                await Task.yield()
            }
        }
        try await trait.provideScope(for: Test.current!, testCase: Test.Case.current) {
            try await outsider.value
        }
    }
}

/// The XCTest helper, in an XCTest test case.
final class WatchdogXCTests: XCTestCase {
    func testOffloadedWorkPasses() async throws {
        let pool = BlockingPool(name: "sb-xctest", threadCount: 2)
        let reports = try await assertNoCooperativeBlocking(threshold: .milliseconds(50 * slowdown)) {
            try await pool.run { _ in _ = usleep(100_000) }
        }
        XCTAssertTrue(reports.isEmpty)
        await pool.shutdownGracefully()
    }
}
