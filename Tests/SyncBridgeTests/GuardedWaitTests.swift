import Foundation
import Testing

@testable import SyncBridge

/// Synchronous legacy code that waits for async work: what the tests call from various threads.
func legacyWait<T: Sendable>(
    _ operation: sending @escaping () async throws -> T
) -> Result<T, any Error> {
    do { return .success(try waitForAsync(operation)) } catch { return .failure(error) }
}

/// Runs `body` in a watchdog scope of its own and returns the blocking calls it made, which
/// reach no other watchdog (such as one `SYNCBRIDGE_WATCHDOG` started for the test run).
func withBlockingCallReports<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> (T, [WatchdogReport])
{
    let scope = WatchdogScope.next()
    let collector = ReportCollector()
    let watchdog = Watchdog(configuration: .init(bands: [], onReport: collector.record), scope: scope)
    // The refusals are the deadlock detector's reports too; they stay in this scope as well.
    let detector = DeadlockDetector(configuration: .init(mode: .report), scope: scope)
    watchdog.start()
    detector.start()
    let result = try await WatchdogScope.$current.withValue(scope) { try await body() }
    await watchdog.shutdown()
    await detector.shutdown()
    return (result, collector.all.filter { $0.kind == .blockingCall && $0.scopeID == scope })
}

/// An actor on a ``ThreadExecutor`` whose synchronous method waits for async work that needs the
/// actor again: the classic self-deadlock.
actor LegacyService {
    let executor: ThreadExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    init(executor: ThreadExecutor) {
        self.executor = executor
    }

    func answer() -> Int { 42 }

    /// Waits for `answer()`, which needs this actor's thread: must throw, not hang.
    func selfWait() -> Result<Int, any Error> {
        legacyWait { await self.answer() }
    }

    /// Waits for work that does not need this thread: must succeed.
    func unrelatedWait() -> Result<Int, any Error> {
        legacyWait {
            try await Task.sleep(for: .milliseconds(5))
            return 7
        }
    }
}

/// A default actor: it runs on the cooperative pool.
actor DefaultActor {
    func waitInside() -> Result<Int, any Error> {
        legacyWait { 1 }
    }
}

@Suite("Guarded async-to-sync wait", .refusesOnPurpose)
struct GuardedWaitTests {
    @Test("from a plain thread it blocks until the result is ready")
    func plainThread() async throws {
        let result = try await withDeadline {
            await onPlainThread {
                legacyWait {
                    try await Task.sleep(for: .milliseconds(20))
                    return "done"
                }
            }
        }
        #expect(try result.get() == "done")
    }

    @Test(
        "on an I/O thread (run by a task that prefers it as its executor) it throws at once, naming the thread as an event loop, and is reported"
    )
    func onIOThread() async throws {
        let thread = IOThread(name: "sb-io-wait")
        defer { thread.shutdown() }
        let (result, reports) = try await withBlockingCallReports {
            await Task(executorPreference: thread) { legacyWait { 1 } }.value
        }
        #expect(reports.map(\.operation) == ["waitForAsync"])
        #expect(reports.first?.eventLoop == "sb-io-wait")
        let error = try #require(throws: GuardedWaitError.self) { try result.get() }
        #expect(error.reason == .eventLoopThread("sb-io-wait"))
    }

    @Test("errors of the awaited work reach the waiting thread")
    func propagatesErrors() async throws {
        struct Boom: Error, Equatable {}
        let result = await onPlainThread { legacyWait { () async throws -> Int in throw Boom() } }
        #expect(throws: Boom.self) { try result.get() }
    }

    @Test("inside a Task it throws at once, naming the call site and the thread, and is reported as a blocking call")
    func insideTask() async throws {
        let (result, reports) = try await withBlockingCallReports {
            try await withDeadline { await Task { legacyWait { 1 } }.value }
        }
        #expect(reports.map(\.operation) == ["waitForAsync"])
        #expect(reports.first?.callSite == "SyncBridgeTests/GuardedWaitTests.swift:10")
        let error = try #require(throws: GuardedWaitError.self) { try result.get() }
        #expect(error.reason == .cooperativeThread)
        #expect(error.callSite.fileID == "SyncBridgeTests/GuardedWaitTests.swift")
        #expect(error.callSite.line == 10)
        #expect(error.description.contains("GuardedWaitTests.swift:10"))
        #expect(error.description.contains("cooperative pool"))
        #expect(error.description.contains("tid \(error.thread.tid)"))
    }

    @Test("inside a default actor it throws at once")
    func insideActor() async throws {
        let (result, reports) = try await withBlockingCallReports {
            try await withDeadline { await DefaultActor().waitInside() }
        }
        #expect(reports.count == 1)
        let error = try #require(throws: GuardedWaitError.self) { try result.get() }
        #expect(error.reason == .cooperativeThread)
    }

    @Test("on a thread executor whose thread the awaited actor needs, it throws instead of hanging")
    func selfDeadlockThroughActor() async throws {
        let executor = ThreadExecutor(name: "sb-wait-self")
        let service = LegacyService(executor: executor)
        let result = try await withDeadline { await service.selfWait() }
        let error = try #require(throws: GuardedWaitError.self) { try result.get() }
        #expect(error.reason.isAwaitedWorkNeedsBlockedThread)
        #expect(error.thread.name == "sb-wait-self")
        #expect(error.description.contains("ThreadExecutor 'sb-wait-self'"))
        // The executor is still usable afterwards.
        #expect(await service.answer() == 42)
        await executor.shutdownGracefully()
    }

    @Test("on a thread executor whose thread a submitted closure needs, it throws instead of hanging")
    func selfDeadlockThroughRun() async throws {
        let executor = ThreadExecutor(name: "sb-wait-run")
        let result = try await withDeadline {
            try await executor.run { legacyWait { try await executor.run { 5 } } }
        }
        let error = try #require(throws: GuardedWaitError.self) { try result.get() }
        #expect(error.reason.isAwaitedWorkNeedsBlockedThread)
        await executor.shutdownGracefully()
    }

    @Test("on a thread executor, work that does not need the thread completes normally")
    func noFalsePositiveOnExecutor() async throws {
        let executor = ThreadExecutor(name: "sb-wait-ok")
        let service = LegacyService(executor: executor)
        let result = try await withDeadline { await service.unrelatedWait() }
        #expect(try result.get() == 7)
        await executor.shutdownGracefully()
    }

    @Test("on a fully blocked pool whose threads the awaited work needs, it throws")
    func poolStarvation() async throws {
        let pool = BlockingPool(name: "sb-wait-pool", threadCount: 1)
        let result = try await withDeadline {
            try await pool.run { legacyWait { try await pool.run { 5 } } }
        }
        let error = try #require(throws: GuardedWaitError.self) { try result.get() }
        #expect(error.reason.isAwaitedWorkNeedsBlockedThread)
        #expect(error.description.contains("BlockingPool 'sb-wait-pool'"))
        await pool.shutdownGracefully()
    }

    @Test("on a pool with a free thread, the awaited work runs there")
    func poolWithRoom() async throws {
        let pool = BlockingPool(name: "sb-wait-pool2", threadCount: 2)
        let result = try await withDeadline {
            try await pool.run { legacyWait { try await pool.run { ThreadIdentity.current.name } } }
        }
        #expect(try result.get().hasPrefix("sb-wait-pool2-"))
        await pool.shutdownGracefully()
    }

    @Test("a timeout ends the wait with a typed error")
    func timeout() async throws {
        let result = try await withDeadline {
            await onPlainThread {
                Result {
                    try waitForAsync(timeout: .milliseconds(50)) {
                        try await Task.sleep(for: .seconds(30))
                    }
                }
            }
        }
        let error = try #require(throws: GuardedWaitError.self) { try result.get() }
        #expect(error.reason.isTimedOut)
    }
}

@Suite("Cooperative-thread detection", .refusesOnPurpose)
struct CooperativePoolTests {
    @Test("the probe recognises task threads; plain and SyncBridge threads are not cooperative")
    func detection() async throws {
        let verification = await CooperativePool.verify()
        #expect(verification.detectsTaskThreads)
        #expect(verification.labelInsideTask == CooperativePool.knownLabel)
        #expect(await Task.detached { CooperativePool.isCurrentThread }.value)
        #expect(await Task.detached(priority: .background) { CooperativePool.isCurrentThread }.value)
        #expect(await onPlainThread { CooperativePool.isCurrentThread } == false)
        let pool = BlockingPool(name: "sb-coop", threadCount: 1)
        #expect(try await pool.run { CooperativePool.isCurrentThread } == false)
        await pool.shutdownGracefully()
    }
}
