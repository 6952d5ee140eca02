import Foundation
import MetricsTestKit
import Testing

@testable import SyncBridge

/// Runs `body` under a deadlock detector of its own scope and returns the reports it caused.
func withDeadlockReports<T: Sendable>(
    mode: DeadlockDetector.Mode = .throwError,
    stuckWaitThreshold: Duration = .seconds(60),
    _ body: @Sendable () async throws -> T
) async throws -> (T, [DeadlockReport]) {
    let scope = WatchdogScope.next()
    let reports = Recorder<DeadlockReport>()
    let detector = DeadlockDetector(
        configuration: .init(mode: mode, stuckWaitThreshold: stuckWaitThreshold, onReport: reports.append),
        scope: scope
    )
    // Refused waits are blocking calls too: a watchdog of the same scope keeps their reports
    // from any other watchdog (such as one SYNCBRIDGE_WATCHDOG started for the test run).
    let watchdog = Watchdog(configuration: .init(bands: []), scope: scope)
    detector.start()
    watchdog.start()
    let result: Result<T, any Error>
    do {
        result = .success(try await WatchdogScope.$current.withValue(scope) { try await body() })
    } catch {
        result = .failure(error)
    }
    await detector.shutdown()
    await watchdog.shutdown()
    return (try result.get(), reports.all)
}

/// Blocks the calling (non-cooperative) thread until `condition` holds, for at most 10 s.
func spinUntil(_ condition: () -> Bool) {
    let deadline = Date().addingTimeInterval(10)
    while !condition() && Date() < deadline { usleep(200) }
}

/// Synchronous legacy code that waits on a semaphore; what the tests call from various threads.
func legacySemaphoreWait(
    _ semaphore: GuardedSemaphore,
    timeout: Duration? = nil,
    line: UInt = #line
) -> Result<Void, any Error> {
    Result { try semaphore.wait(timeout: timeout, line: line) }
}

@Suite("Deadlock detector")
struct DeadlockDetectorTests {
    @Test("pattern 1: a guarded wait or GuardedSemaphore.wait on a cooperative thread is refused at once and reported")
    func cooperativeThreadWait() async throws {
        let semaphore = GuardedSemaphore(value: 0, name: "legacy slot")
        let (results, reports) = try await withDeadlockReports {
            try await withDeadline {
                (legacyWait { 1 }, legacySemaphoreWait(semaphore))
            }
        }
        let waitError = try #require(throws: GuardedWaitError.self) { try results.0.get() }
        #expect(waitError.reason == .cooperativeThread)
        let semaphoreError = try #require(throws: GuardedWaitError.self) { try results.1.get() }
        #expect(semaphoreError.reason == .cooperativeThread)
        #expect(reports.map(\.pattern) == [.cooperativeThreadWait, .cooperativeThreadWait])
        #expect(reports.allSatisfy { $0.thrown })
        #expect(reports[0].headline.contains("waitForAsync"))
        #expect(reports[1].headline.contains("GuardedSemaphore(legacy slot).wait"))
        // The call sites are the callers' lines.
        #expect(reports[0].chain.first?.callSite?.hasPrefix("SyncBridgeTests/GuardedWaitTests.swift:") == true)
        #expect(reports[1].chain.first?.callSite?.hasPrefix("SyncBridgeTests/DeadlockDetectorTests.swift:") == true)
    }

    @Test(
        "pattern 2: code on a ThreadExecutor's thread that waits for work needing that thread is refused and reported"
    )
    func selfWait() async throws {
        let executor = ThreadExecutor(name: "sb-dl-self")
        let service = LegacyService(executor: executor)
        let (result, reports) = try await withDeadlockReports { try await withDeadline { await service.selfWait() } }
        let error = try #require(throws: GuardedWaitError.self) { try result.get() }
        #expect(error.reason.isAwaitedWorkNeedsBlockedThread)
        let report = try #require(reports.first { $0.pattern == .selfWait })
        #expect(report.headline.contains("ThreadExecutor 'sb-dl-self'"))
        #expect(report.chain.first?.party.contains("sb-dl-self") == true)
        #expect(report.chain.first?.callSite?.hasPrefix("SyncBridgeTests/GuardedWaitTests.swift:") == true)
        await executor.shutdownGracefully()
    }

    @Test(
        "pattern 3: of pool jobs that wait for work queued behind them on the same full pool, exactly one is refused and the other gets its answer; the report lists the waiting jobs"
    )
    func blockingPoolStarvation() async throws {
        let pool = BlockingPool(name: "sb-dl-starve", threadCount: 2)
        let inside = Shared(0)
        let (results, reports) = try await withDeadlockReports {
            try await withDeadline {
                try await withThrowingTaskGroup(of: Result<Int, any Error>.self) { group in
                    for _ in 0..<2 {
                        group.addTask {
                            try await pool.run {
                                // Both threads take the pool before either waits.
                                inside.withLock { $0 += 1 }
                                spinUntil { inside.value == 2 }
                                return legacyWait { try await pool.run { 7 } }
                            }
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
        }
        let refused = results.compactMap { result -> GuardedWaitError? in
            if case .failure(let error as GuardedWaitError) = result { return error }
            return nil
        }
        // Exactly one wait is refused (the one whose work arrived when no thread was left); its
        // thread then runs the other's work, which gets its answer.
        #expect(refused.count == 1)
        #expect(refused.allSatisfy { $0.reason.isAwaitedWorkNeedsBlockedThread })
        #expect(results.compactMap { try? $0.get() } == [7])
        let report = try #require(reports.first { $0.pattern == .blockingPoolStarvation })
        #expect(report.headline.contains("BlockingPool 'sb-dl-starve'"))
        let waiting = report.chain.filter { $0.action == "waits in" }
        #expect(waiting.count == 2)
        #expect(Set(waiting.map(\.party)).count == 2)
        #expect(waiting.allSatisfy { $0.party.contains("sb-dl-starve") })
        await pool.shutdownGracefully()
    }

    @Test(
        "pattern 5: CheckedMutex classes taken in both orders are reported on the first inversion, with both sites, without any hang"
    )
    func checkedMutexInversion() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let accounts = CheckedMutex(0, lockClass: "accounts-\(suffix)")
        let ledger = CheckedMutex(0, lockClass: "ledger-\(suffix)")
        let (_, reports) = try await withDeadlockReports(mode: .report) {
            let pool = BlockingPool(name: "sb-dl-order", threadCount: 1)
            // One job takes accounts then ledger; a later one ledger then accounts. They never
            // overlap, so nothing hangs; the orders still contradict each other.
            try await pool.run {
                accounts.withLock { a in
                    ledger.withLock { l in
                        a += 1
                        l += 1
                    }
                }
            }
            try await pool.run {
                ledger.withLock { l in
                    accounts.withLock { a in
                        a += 1
                        l += 1
                    }
                }
            }
            // The same inversion again is not reported twice.
            try await pool.run {
                ledger.withLock { l in
                    accounts.withLock { a in
                        a += 1
                        l += 1
                    }
                }
            }
            await pool.shutdownGracefully()
        }
        #expect(reports.count == 1)
        let report = try #require(reports.first)
        #expect(report.pattern == .lockOrderInversion)
        #expect(report.headline.contains("accounts-\(suffix)") && report.headline.contains("ledger-\(suffix)"))
        let sites = report.chain.compactMap(\.callSite)
        #expect(sites.count == 4)
        #expect(sites.allSatisfy { $0.hasPrefix("SyncBridgeTests/DeadlockDetectorTests.swift:") })
        #expect(report.chain.first?.party.contains("sb-dl-order") == true)
        #expect(report.chain.contains { $0.party.hasPrefix("earlier,") })
        #expect(accounts.withLock { $0 } == 3 && ledger.withLock { $0 } == 3)
    }

    @Test(
        "pattern 5: AsyncMutex classes taken in both orders by tasks that never overlap are reported, naming both tasks' sites"
    )
    func asyncMutexInversion() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let cache = AsyncMutex([Int](), lockClass: "cache-\(suffix)")
        let index = AsyncMutex(0, lockClass: "index-\(suffix)")
        let (_, reports) = try await withDeadlockReports(mode: .report) {
            try await Task {
                try await cache.withLock { values in
                    try await index.withLock { count in
                        values.append(1)
                        count += 1
                    }
                }
            }.value
            try await Task {
                try await index.withLock { count in
                    try await cache.withLock { values in
                        values.append(2)
                        count += 1
                    }
                }
            }.value
        }
        #expect(reports.count == 1)
        let report = try #require(reports.first)
        #expect(report.pattern == .lockOrderInversion)
        #expect(report.chain.first?.object == "AsyncMutex \"cache-\(suffix)\"")
        #expect(report.chain.first?.party.hasPrefix("task") == true)
        #expect(report.chain.compactMap(\.callSite).count == 4)
        #expect(try await index.withLock { $0 } == 2)
    }

    @Test(
        "pattern 6: two tasks waiting for each other's AsyncMutex are detected at once; in throw mode the wait that closed the cycle throws"
    )
    func asyncMutexCycle() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let left = AsyncMutex(0, lockClass: "left-\(suffix)")
        let right = AsyncMutex(0, lockClass: "right-\(suffix)")
        let leftHeld = Gate()
        let rightHeld = Gate()
        let start = ContinuousClock.now
        let (outcomes, reports) = try await withDeadlockReports {
            try await withDeadline {
                try await withThrowingTaskGroup(of: String.self) { group in
                    group.addTask {
                        do {
                            return try await left.withLock { _ in
                                leftHeld.open()
                                try await rightHeld.opened()
                                return try await right.withLock { _ in "A done" }
                            }
                        } catch is DeadlockError {
                            return "A refused"
                        }
                    }
                    group.addTask {
                        do {
                            return try await right.withLock { _ in
                                rightHeld.open()
                                try await leftHeld.opened()
                                return try await left.withLock { _ in "B done" }
                            }
                        } catch is DeadlockError {
                            return "B refused"
                        }
                    }
                    return try await group.reduce(into: [String]()) { $0.append($1) }.sorted()
                }
            }
        }
        // At once, not after the 60 s stuck-wait threshold (the bound leaves room for a loaded
        // 2-core machine).
        #expect(ContinuousClock.now - start < .seconds(10 * Int64(slowdown)))
        // One wait closed the cycle and threw; the other task then got its lock.
        #expect(outcomes == ["A done", "B refused"] || outcomes == ["A refused", "B done"])
        let cycle = try #require(reports.first { $0.pattern == .waitCycle })
        #expect(cycle.thrown)
        #expect(cycle.headline.contains("2 tasks wait for each other"))
        let waits = cycle.chain.filter { $0.action == "waits for" }
        #expect(Set(waits.map(\.object)) == ["AsyncMutex \"left-\(suffix)\"", "AsyncMutex \"right-\(suffix)\""])
        #expect(cycle.chain.filter { $0.party.hasPrefix("  held by") }.count == 2)
        // The two orders were also an inversion, reported as such.
        #expect(reports.contains { $0.pattern == .lockOrderInversion })
    }

    @Test(
        "pattern 6: a cycle through a pool job's guarded wait and an AsyncMutex is detected, and broken in throw mode; the legacy code gets GuardedWaitError with the report"
    )
    func guardedWaitCycle() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let mutex = AsyncMutex(0, lockClass: "session-\(suffix)")
        let pool = BlockingPool(name: "sb-dl-cycle", threadCount: 1)
        let (result, reports) = try await withDeadlockReports {
            try await withDeadline {
                try await mutex.withLock { _ in
                    // Legacy code on the pool waits for async work that needs the mutex this
                    // task holds while it awaits the legacy code: neither can go on.
                    try await pool.run { legacyWait { try await mutex.withLock { $0 } } }
                }
            }
        }
        // The wait that closed the cycle (the awaited work's, for the mutex) threw; the legacy code
        // got the refusal, as GuardedWaitError with the report, instead of hanging.
        let error = try #require(throws: GuardedWaitError.self) { try result.get() }
        #expect(error.reason.isDeadlock)
        #expect(error.report?.pattern == .waitCycle)
        #expect(error.report?.thrown == true)
        let cycle = try #require(reports.first { $0.pattern == .waitCycle })
        let waits = cycle.chain.filter { $0.action == "waits for" }
        #expect(waits.count == 2)
        #expect(waits.contains { $0.object == "AsyncMutex \"session-\(suffix)\"" })
        #expect(
            waits.contains {
                $0.object == "the work it awaits in waitForAsync"
                    && $0.callSite?.hasPrefix("SyncBridgeTests/GuardedWaitTests.swift:") == true
            }
        )
        #expect(waits.contains { $0.party.contains("its closure on thread sb-dl-cycle") })
        await pool.shutdownGracefully()
    }

    @Test(
        "throw mode: one catch clause handles every refusal of a guarded wait — on a cooperative thread, for work that needs the blocked thread, and a deadlock found inside the awaited work"
    )
    func oneErrorForEveryRefusal() async throws {
        /// What legacy code that catches `GuardedWaitError` alone makes of a guarded wait.
        @Sendable func outcome(_ result: Result<Int, any Error>) -> String {
            do {
                return "ran: \(try result.get())"
            } catch let refusal as GuardedWaitError {
                if refusal.reason.isDeadlock { return "deadlock: \(refusal.report?.pattern.name ?? "no report")" }
                if refusal.reason.isAwaitedWorkNeedsBlockedThread { return "needs the blocked thread" }
                return "refused: \(refusal.reason == .cooperativeThread ? "cooperative thread" : "\(refusal.reason)")"
            } catch {
                return "another error: \(type(of: error))"
            }
        }
        let suffix = UUID().uuidString.prefix(8)
        let mutex = AsyncMutex(0, lockClass: "one-catch-\(suffix)")
        let pool = BlockingPool(name: "sb-dl-one-catch", threadCount: 1)
        let executor = ThreadExecutor(name: "sb-dl-one-catch-self")
        let service = LegacyService(executor: executor)
        let (outcomes, _) = try await withDeadlockReports {
            try await withDeadline {
                let onCooperativeThread = legacyWait { 1 }
                let selfWait = await service.selfWait().map { _ in 0 }
                let cycle = try await mutex.withLock { _ in
                    try await pool.run { legacyWait { try await mutex.withLock { $0 } } }
                }
                return [onCooperativeThread, selfWait, cycle].map(outcome)
            }
        }
        #expect(outcomes == ["refused: cooperative thread", "needs the blocked thread", "deadlock: wait-cycle"])
        await pool.shutdownGracefully()
        await executor.shutdownGracefully()
    }

    @Test("pattern 8: a wait longer than the threshold is reported with its chain before it ends, and not twice")
    func stuckWaits() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let semaphore = GuardedSemaphore(value: 0, name: "slot-\(suffix)")
        let mutex = AsyncMutex(0, lockClass: "held-\(suffix)")
        let held = Gate()
        let release = Gate()
        let threshold = Duration.milliseconds(100 * slowdown)
        let (results, reports) = try await withDeadlockReports(mode: .throwError, stuckWaitThreshold: threshold) {
            try await withDeadline(60) {
                // A holder that runs (not waiting for SyncBridge) and a waiter behind it.
                let holder = Task {
                    try await mutex.withLock { _ in
                        held.open()
                        try await release.opened()
                    }
                }
                try await held.opened()
                let waiter = Task { try await mutex.withLock { $0 } }
                // A plain thread belongs to no test: it joins this one's scope explicitly.
                let scope = WatchdogScope.current
                let semaphoreResult = await onPlainThread {
                    WatchdogScope.$current.withValue(scope) { legacySemaphoreWait(semaphore, timeout: threshold * 5) }
                }
                release.open()
                try await holder.value
                return (semaphoreResult, try await waiter.value)
            }
        }
        // The semaphore wait timed out after five thresholds; it was reported stuck long before.
        let timeout = try #require(throws: GuardedWaitError.self) { try results.0.get() }
        #expect(timeout.reason.isTimedOut)
        #expect(results.1 == 0)
        let stuck = reports.filter { $0.pattern == .stuckWait }
        #expect(stuck.count == 2)
        #expect(stuck.allSatisfy { !$0.thrown })
        let semaphoreReport = try #require(stuck.first { $0.headline.contains("slot-\(suffix)") })
        #expect(semaphoreReport.chain.contains { $0.party.contains("nobody holds it") })
        #expect(semaphoreReport.chain.first?.party.hasPrefix("thread ") == true, "\(semaphoreReport)")
        let mutexReport = try #require(stuck.first { $0.headline.contains("held-\(suffix)") })
        #expect(mutexReport.chain.contains { $0.party.hasPrefix("  held by task") })
        #expect(mutexReport.chain.contains { $0.action == "is running, not waiting for SyncBridge" })
    }

    @Test(
        "trap mode stops the process with the report; off mode tracks nothing and refuses only what the guarded wait always refuses"
    )
    func trapAndOff() async throws {
        let trapped = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let detector = DeadlockDetector(configuration: .init(mode: .trap))
            detector.start()
            _ = await Task.detached { legacyWait { 1 } }.value
        }
        let message = String(decoding: trapped?.standardErrorContent ?? [], as: UTF8.self)
        #expect(
            message.contains(
                "DEADLOCK (cooperative-thread-wait): waitForAsync would block a thread of Swift's cooperative pool"
            ),
            "\(message)"
        )
        await #expect(processExitsWith: .success) {
            let detector = DeadlockDetector(configuration: .init(mode: .off))
            detector.start()
            precondition(!WaitGraph.isActive)
            // Refused as always, reported nowhere, and the process goes on.
            guard case .failure = await Task.detached(operation: { legacyWait { 1 } }).value else { exit(1) }
            exit(0)
        }
    }

    @Test("reports reach metrics (per pattern), the callback and a JSON-lines file a program can decode")
    func reportDestinations() async throws {
        let metrics = TestMetrics()
        let path = NSTemporaryDirectory() + "/sb-deadlock-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let received = Recorder<DeadlockReport>()
        let scope = WatchdogScope.next()
        let detector = DeadlockDetector(
            configuration: .init(mode: .report, jsonLinesPath: path, onReport: received.append),
            metricsFactory: metrics,
            scope: scope
        )
        let watchdog = Watchdog(configuration: .init(bands: []), scope: scope)
        detector.start()
        watchdog.start()
        let result = WatchdogScope.$current.withValue(scope) { legacyWait { 1 } }
        await detector.shutdown()
        await watchdog.shutdown()
        #expect(throws: GuardedWaitError.self) { try result.get() }
        let reports = received.all
        #expect(reports.map(\.pattern) == [.cooperativeThreadWait])
        let counter = try metrics.expectCounter("syncbridge.deadlock.reports", [("pattern", "cooperative-thread-wait")])
        #expect(counter.totalValue == 1)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        let decoded = try lines.map { try JSONDecoder().decode(DeadlockReport.self, from: Data($0.utf8)) }
        #expect(decoded == reports)
    }

    @Test(
        "pattern 8: a guarded wait that lasts is reported as stuck, with the awaited work behind it (running, or not started yet)"
    )
    func stuckGuardedWait() async throws {
        let threshold = Duration.milliseconds(200 * slowdown)
        let started = Shared<Date?>(nil)
        let (result, reports) = try await withDeadlockReports(mode: .throwError, stuckWaitThreshold: threshold) {
            let scope = WatchdogScope.current
            return await onPlainThread {
                WatchdogScope.$current.withValue(scope) {
                    Result {
                        try waitForAsync {
                            started.withLock { $0 = Date() }
                            try await Task.sleep(for: threshold * 5)
                            return 5
                        }
                    }
                }
            }
        }
        #expect(try result.get() == 5)
        let stuck = try #require(reports.first { $0.pattern == .stuckWait })
        #expect(reports.count == 1)
        #expect(stuck.headline.contains("the work it awaits in waitForAsync"))
        #expect(stuck.chain.first?.party.hasPrefix("thread ") == true)
        // Other tests load the cooperative pool: the awaited work may not have started by the
        // threshold, and the chain must say which it was.
        if let start = started.value, start < stuck.detectedAt {
            #expect(stuck.chain.contains { $0.party.hasPrefix("  held by task") }, "\(stuck)")
            #expect(stuck.chain.contains { $0.action == "is running, not waiting for SyncBridge" }, "\(stuck)")
        } else {
            // (The awaited task records itself a few microseconds before its body notes the time.)
            #expect(
                stuck.chain.contains {
                    $0.party.contains("nobody holds it yet") || $0.party.hasPrefix("  held by task")
                },
                "\(stuck)"
            )
        }
    }

    @Test("reports read as headline, chain and fix, and round-trip as JSON")
    func format() async throws {
        let report = DeadlockReport(
            pattern: .waitCycle,
            headline: "2 tasks wait for each other in a cycle; none can go on",
            chain: [
                .init(party: "task 'a'", action: "waits for", object: "AsyncMutex \"x\"", callSite: "App/A.swift:3"),
                .init(party: "  held by task 'b'", action: "who took it", object: "", callSite: "App/B.swift:9"),
            ],
            advice: "take the locks in one order everywhere"
        )
        #expect(
            report.description == """
                DEADLOCK (wait-cycle): 2 tasks wait for each other in a cycle; none can go on
                  task 'a' waits for AsyncMutex "x" at App/A.swift:3
                    held by task 'b' who took it at App/B.swift:9
                  Fix: take the locks in one order everywhere
                """
        )
        let decoded = try JSONDecoder().decode(DeadlockReport.self, from: JSONEncoder().encode(report))
        #expect(decoded == report)
        #expect(DeadlockPattern.all.count == 7)
    }
}

extension Gate {
    /// Suspends (without blocking a thread) until the gate opens.
    func opened() async throws {
        try await withDeadline { await onPlainThread { self.wait() } }
    }
}
