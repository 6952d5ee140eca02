import Foundation
import Synchronization
import Testing

@testable import SyncBridge

/// An actor whose methods run on a ``ThreadExecutor``'s thread.
actor Counter {
    let executor: ThreadExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private(set) var value = 0

    init(executor: ThreadExecutor) {
        self.executor = executor
    }

    func increment() -> (value: Int, thread: String, cooperative: Bool) {
        value += 1
        return (value, ThreadIdentity.current.name, CooperativePool.isCurrentThread)
    }
}

@Suite("ThreadExecutor", .refusesOnPurpose)
struct ThreadExecutorTests {
    @Test("closures run on the named thread, never on a cooperative one")
    func runsOnItsThread() async throws {
        let executor = ThreadExecutor(name: "sb-test-exec")
        let (name, cooperative, isCurrent) = try await executor.run {
            (ThreadIdentity.current.name, CooperativePool.isCurrentThread, executor.isCurrent)
        }
        #expect(name == "sb-test-exec")
        #expect(!cooperative)
        #expect(isCurrent)
        #expect(!executor.isCurrent)
        await executor.shutdownGracefully()
    }

    @Test("a thread retiring while idle exits, and the next job starts one with the same name, in order")
    func retiresWhileIdle() async throws {
        let executor = ThreadExecutor(name: "sb-test-retire", retiringAfterIdle: .milliseconds(20))
        let first = try await executor.run { ThreadIdentity.current }
        #expect(first.name == "sb-test-retire")
        try await waitUntil("the idle thread exited") {
            executor.statistics.threadCount == 0 && !Self.threadExists(first.tid)
        }

        // Jobs submitted while no thread lives start one and run in order on it; an actor using
        // the executor is served there too.
        let second = try await executor.run { ThreadIdentity.current }
        let order = Recorder<Int>()
        for index in 0..<20 {
            try await executor.run { order.append(index) }
        }
        let hop = await Counter(executor: executor).increment()
        #expect(second.name == "sb-test-retire")
        #expect(second.tid != first.tid)
        #expect(order.all == Array(0..<20))
        #expect(hop.thread == "sb-test-retire" && !hop.cooperative)

        // Shutting down after the thread retired again completes, and refuses work after.
        try await waitUntil("the idle thread retired again") { executor.statistics.threadCount == 0 }
        await executor.shutdownGracefully()
        #expect(executor.statistics.isShutDown)
        await #expect(throws: ExecutorError.self) { try await executor.run {} }
    }

    /// Whether the process still has the thread `tid`.
    static func threadExists(_ tid: Int32) -> Bool {
        access("/proc/self/task/\(tid)", F_OK) == 0
    }

    @Test("an actor using it as its executor runs every method on that thread")
    func actorIsolation() async throws {
        let executor = ThreadExecutor(name: "sb-test-actor")
        let counter = Counter(executor: executor)
        for expected in 1...100 {
            let result = await counter.increment()
            #expect(result.value == expected)
            #expect(result.thread == "sb-test-actor")
            #expect(!result.cooperative)
        }
        // The runtime's isolation check accepts the thread.
        let assumed = try await executor.run {
            counter.assumeIsolated { $0.value }
        }
        #expect(assumed == 100)
        await executor.shutdownGracefully()
    }

    @Test("jobs run in the order they were enqueued")
    func order() async throws {
        let executor = ThreadExecutor(name: "sb-test-order")
        let gate = Gate()
        let order = Recorder<Int>()
        let blocker = Task { try await executor.run { gate.wait() } }
        try await waitUntil("the blocker runs") { executor.statistics.runningWork == 1 }
        var tasks: [Task<Void, any Error>] = []
        for index in 0..<50 {
            tasks.append(Task { try await executor.run { order.append(index) } })
            try await waitUntil("job \(index) is queued") { executor.statistics.queuedWork == index + 1 }
        }
        gate.open()
        try await blocker.value
        for task in tasks { try await task.value }
        #expect(order.all == Array(0..<50))
        await executor.shutdownGracefully()
    }

    @Test("10,000 concurrent actor calls and closures each complete exactly once")
    func manyConcurrentJobs() async throws {
        let executor = ThreadExecutor(name: "sb-test-many")
        let counter = Counter(executor: executor)
        let runs = Shared([Int](repeating: 0, count: 10_000))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<10_000 {
                group.addTask {
                    if index.isMultiple(of: 2) {
                        _ = await counter.increment()
                    } else {
                        try await executor.run { runs.withLock { $0[index] += 1 } }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(await counter.value == 5_000)
        let counts = runs.value
        #expect(counts.enumerated().allSatisfy { $0.offset.isMultiple(of: 2) ? $0.element == 0 : $0.element == 1 })
        await executor.shutdownGracefully()
    }

    @Test("shutdown refuses new closures, lets queued ones finish, and returns")
    func shutdown() async throws {
        let executor = ThreadExecutor(name: "sb-test-stop")
        let gate = Gate()
        let blocker = Task {
            try await executor.run {
                gate.wait()
                return "blocker"
            }
        }
        try await waitUntil("the blocker runs") { executor.statistics.runningWork == 1 }
        let queued = Task { try await executor.run { "queued" } }
        try await waitUntil("a closure is queued") { executor.statistics.queuedWork == 1 }
        let shutdown = Task { await executor.shutdownGracefully() }
        try await waitUntil("shutdown began") { executor.statistics.isShutDown }

        let error = await #expect(throws: ExecutorError.self) { try await executor.run { "late" } }
        #expect(error?.code == .shutDown)
        #expect(error?.description == "ThreadExecutor 'sb-test-stop' is shut down: it accepts no new work")

        gate.open()
        #expect(try await blocker.value == "blocker")
        #expect(try await queued.value == "queued")
        try await withDeadline { await shutdown.value }
    }

    @Test("syncShutdownGracefully refuses to run on the executor's own thread")
    func syncShutdownOnOwnThread() async throws {
        let executor = ThreadExecutor(name: "sb-test-self")
        let error = try await executor.run { () -> GuardedWaitError? in
            do {
                try executor.syncShutdownGracefully()
                return nil
            } catch {
                return error as? GuardedWaitError
            }
        }
        #expect(error?.reason.isAwaitedWorkNeedsBlockedThread == true)
        await onPlainThread { try! executor.syncShutdownGracefully() }
        #expect(executor.statistics.isShutDown)
    }
}
