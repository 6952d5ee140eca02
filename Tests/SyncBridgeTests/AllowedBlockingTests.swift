import Foundation
import MetricsTestKit
import Testing

@testable import SyncBridge

@Suite("Accepted blocking: counted, not reported")
struct AllowedBlockingTests {
    @Test(
        "a blocking call inside Blocking.allowed goes ahead unreported whatever the policy, and is counted with its reason; one outside is still reported"
    )
    func allowedBlockingCall() async throws {
        // Its watchdog also receives the blocking calls made outside any scope, which the tests
        // that block on purpose make from detached tasks: take turns with them.
        try await WatchdogScope.exclusively {
            let metrics = TestMetrics()
            let collector = ReportCollector()
            let scope = WatchdogScope.next()
            let watchdog = Watchdog(
                configuration: .init(bands: [], onReport: collector.record),
                metricsFactory: metrics,
                scope: scope
            )
            watchdog.start()
            try WatchdogScope.$current.withValue(scope) {
                // On a cooperative thread (this task's).
                #expect(GuardedThread.current == .cooperative)
                let settings = try Blocking.allowed("start-up: read the settings once") {
                    try Blocking.call("readSettings", policy: .throwError) { 42 }
                }
                #expect(settings == 42)
                try Blocking.call("legacyFetch") { _ = usleep(1_000) }
            }
            await watchdog.shutdown()
            #expect(collector.all.map(\.operation) == ["legacyFetch"])
            let allowed = try metrics.expectCounter(
                "syncbridge.watchdog.allowed",
                [("kind", "blocking_call"), ("reason", "start-up: read the settings once")]
            )
            #expect(allowed.totalValue == 1)
            let reported = try metrics.expectCounter("syncbridge.watchdog.blocking_calls")
            #expect(reported.totalValue == 1)
        }
    }

    @Test("a guarded wait inside Blocking.allowed is still refused on a cooperative thread: it could hang")
    func guardedWaitStillRefused() async throws {
        let result = try await withBlockingCallReports {
            Blocking.allowed("not for waits") { legacyWait { 1 } }
        }
        let error = try #require(throws: GuardedWaitError.self) { try result.0.get() }
        #expect(error.reason == .cooperativeThread)
    }

    @Test(
        "a stall whose blocked threads are all inside Blocking.allowed, or all in an allowed frame, is counted, not reported; another stall still is",
        .enabled(if: soloTestsEnabled, soloTestsNote),
        .enabled(if: stallReportsExpected, stallReportsNote)
    )
    func testSoloAllowedStalls() async throws {
        try await WatchdogScope.exclusively {
            let metrics = TestMetrics()
            let collector = ReportCollector()
            let watchdog = Watchdog(
                configuration: .init(
                    threshold: .milliseconds(50),
                    bands: [.utility],
                    onReport: collector.record,
                    allowedFrames: ["nanosleep"]
                ),
                metricsFactory: metrics
            )
            watchdog.start()
            try await waitUntil("the band was probed") { watchdog.hasProbed(.utility) }
            // 1. Every thread of the band blocks inside an accepted scope.
            await blockUtilityBandAllowed(milliseconds: 300) { body in
                Blocking.allowed("start-up read") { body() }
            }
            // 2. Every thread blocks in an allowed frame (usleep sleeps in nanosleep).
            await blockUtilityBandAllowed(milliseconds: 300) { $0() }
            try await waitUntil("both stalls are counted") {
                let counters =
                    (try? metrics.expectCounter(
                        "syncbridge.watchdog.allowed",
                        [("kind", "stall"), ("reason", "start-up read")]
                    ).totalValue) ?? 0
                let frames =
                    (try? metrics.expectCounter(
                        "syncbridge.watchdog.allowed",
                        [("kind", "stall"), ("reason", "frame nanosleep")]
                    ).totalValue) ?? 0
                return counters == 1 && frames == 1
            }
            #expect(collector.all.isEmpty, "\(collector.all)")
            await watchdog.shutdown()
            // 3. Without the frame allowed, the same blocking is reported.
            let reporting = ReportCollector()
            let strict = Watchdog(
                configuration: .init(threshold: .milliseconds(50), bands: [.utility], onReport: reporting.record)
            )
            strict.start()
            try await waitUntil("the band was probed") { strict.hasProbed(.utility) }
            await blockUtilityBandAllowed(milliseconds: 300) { $0() }
            try await waitUntil("the stall is reported") { reporting.first { $0.kind == .stall } != nil }
            await strict.shutdown()
        }
    }
}

extension AllowedBlockingTests {
    @Test(
        "in per-job mode, a slow job that entered Blocking.allowed is counted, not reported; a slow job outside still is",
        .enabled(if: soloTestsEnabled, soloTestsNote)
    )
    func testSoloAllowedSlowJob() async throws {
        try await WatchdogScope.exclusively {
            let metrics = TestMetrics()
            let collector = ReportCollector()
            let watchdog = Watchdog(
                configuration: .init(
                    threshold: .milliseconds(50 * slowdown),
                    onReport: collector.record,
                    timesEveryJob: true
                ),
                metricsFactory: metrics
            )
            watchdog.start()
            await Task.detached {
                Blocking.allowed("per-job: accepted read") { sleepBlocking(milliseconds: Int(200 * slowdown)) }
            }.value
            await Task.detached { sleepBlocking(milliseconds: Int(200 * slowdown)) }.value
            try await waitUntil("the slow job outside is reported, with its end") {
                collector.first { $0.kind == .slowJob && !$0.isOngoing } != nil
            }
            await watchdog.shutdown()
            let allowed = try metrics.expectCounter(
                "syncbridge.watchdog.allowed",
                [("kind", "slow_job"), ("reason", "per-job: accepted read")]
            )
            #expect(allowed.totalValue == 1)
            // One slow job reported (while it ran, and at its end): the one outside the scope.
            let starts = Set(collector.all.filter { $0.kind == .slowJob }.map(\.startedAt))
            #expect(starts.count == 1, "\(collector.all)")
        }
    }
}

/// Blocks every thread of the utility band in `usleep` for `milliseconds`, each inside `wrap`,
/// and returns when they are done.
private func blockUtilityBandAllowed(
    milliseconds: UInt32,
    _ wrap: @escaping @Sendable (() -> Void) -> Void
) async {
    await blockBand(.utility, milliseconds: milliseconds, inside: wrap).done.value
}
