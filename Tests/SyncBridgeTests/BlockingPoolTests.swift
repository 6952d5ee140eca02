import Foundation
import Synchronization
import Testing

@testable import SyncBridge

@Suite("BlockingPool")
struct BlockingPoolTests {
    @Test("closures run on the pool's named threads, never on cooperative ones")
    func runsOnPoolThreads() async throws {
        let pool = BlockingPool(name: "sb-pool", threadCount: 3)
        let seen = try await withThrowingTaskGroup(of: (String, Bool).self) { group in
            for _ in 0..<30 {
                group.addTask { try await pool.run { (ThreadIdentity.current.name, CooperativePool.isCurrentThread) } }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(seen.count == 30)
        #expect(seen.allSatisfy { ["sb-pool-0", "sb-pool-1", "sb-pool-2"].contains($0.0) && !$0.1 })
        await pool.shutdownGracefully()
    }

    @Test("10,000 concurrent closures each run exactly once")
    func exactlyOnce() async throws {
        let pool = BlockingPool(name: "sb-once", threadCount: 4, queueCapacity: 64)
        let runs = Shared([Int](repeating: 0, count: 10_000))
        let results = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<10_000 {
                group.addTask {
                    try await pool.run {
                        runs.withLock { $0[index] += 1 }
                        return index
                    }
                }
            }
            return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
        }
        #expect(results == Set(0..<10_000))
        #expect(runs.value.allSatisfy { $0 == 1 })
        await pool.shutdownGracefully()
    }

    @Test("with a queue of capacity k, the (k+1)-th submitter waits for room, and order is kept")
    func backpressure() async throws {
        let capacity = 3
        let pool = BlockingPool(name: "sb-bp", threadCount: 1, queueCapacity: capacity)
        let gate = Gate()
        let order = Recorder<Int>()
        let blocker = Task { try await pool.run { gate.wait() } }
        try await waitUntil("the blocker runs") { pool.statistics.runningWork == 1 }
        var tasks: [Task<Void, any Error>] = []
        for index in 0..<capacity {
            tasks.append(Task { try await pool.run { order.append(index) } })
            try await waitUntil("job \(index) is queued") { pool.statistics.queuedWork == index + 1 }
        }
        tasks.append(Task { try await pool.run { order.append(capacity) } })
        try await waitUntil("the extra submitter waits for room") { pool.statistics.awaitingAdmission == 1 }
        #expect(pool.statistics.queuedWork == capacity)

        gate.open()
        try await blocker.value
        for task in tasks { try await task.value }
        #expect(order.all == Array(0...capacity))
        #expect(pool.statistics.awaitingAdmission == 0)
        await pool.shutdownGracefully()
    }

    @Test(
        "a closure cancelled before it starts never runs and its caller gets CancellationError",
        arguments: [false, true]
    )
    func cancelBeforeStart(whileAwaitingAdmission: Bool) async throws {
        let pool = BlockingPool(name: "sb-cancel", threadCount: 1, queueCapacity: 1)
        let gate = Gate()
        let ran = Shared(false)
        let blocker = Task { try await pool.run { gate.wait() } }
        try await waitUntil("the blocker runs") { pool.statistics.runningWork == 1 }
        var filler: Task<Void, any Error>?
        if whileAwaitingAdmission {
            filler = Task { try await pool.run {} }
            try await waitUntil("the queue is full") { pool.statistics.queuedWork == 1 }
        }
        let victim = Task { try await pool.run { ran.withLock { $0 = true } } }
        try await waitUntil("the victim waits") {
            whileAwaitingAdmission ? pool.statistics.awaitingAdmission == 1 : pool.statistics.queuedWork == 1
        }
        victim.cancel()
        // The caller is resumed at once, while the thread is still blocked.
        await #expect(throws: CancellationError.self) { try await withDeadline { try await victim.value } }
        gate.open()
        try await blocker.value
        try await filler?.value
        await pool.shutdownGracefully()
        let didRun = ran.value
        #expect(!didRun)
    }

    @Test("a task cancelled before submitting never runs its closure")
    func alreadyCancelled() async throws {
        let pool = BlockingPool(name: "sb-precancel", threadCount: 1)
        let ran = Shared(false)
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await pool.run { ran.withLock { $0 = true } }
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        await pool.shutdownGracefully()
        let didRun = ran.value
        #expect(!didRun)
    }

    @Test("cancelling a running closure calls its interrupt handler once, from another thread")
    func interruptWhileRunning() async throws {
        let pool = BlockingPool(name: "sb-intr", threadCount: 1)
        let interrupted = Gate()
        let calls = Recorder<Int32>()
        let jobThread = Shared<Int32>(0)
        let started = Gate()
        let task = Task {
            try await pool.run { job in
                jobThread.withLock { $0 = ThreadIdentity.current.tid }
                try job.withInterruptHandler({
                    calls.append(ThreadIdentity.current.tid)
                    interrupted.open()
                }) {
                    started.open()
                    interrupted.wait()  // the blocking call that only an interrupt ends
                    try job.checkCancellation()
                }
            }
        }
        await onPlainThread { started.wait() }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await withDeadline { try await task.value } }
        #expect(calls.all.count == 1)
        let jobTid = jobThread.value
        #expect(calls.all.first != jobTid)
        await pool.shutdownGracefully()
    }

    @Test("an interrupt handler installed after cancellation runs at once")
    func interruptAfterCancellation() async throws {
        let pool = BlockingPool(name: "sb-intr2", threadCount: 1)
        let calls = Shared(0)
        let started = Gate()
        let proceed = Gate()
        let task = Task {
            try await pool.run { job in
                started.open()
                proceed.wait()
                return job.withInterruptHandler({ calls.withLock { $0 += 1 } }) { job.isCancelled }
            }
        }
        await onPlainThread { started.wait() }
        task.cancel()
        proceed.open()
        #expect(try await task.value == true)
        let callCount = calls.value
        #expect(callCount == 1)
        await pool.shutdownGracefully()
    }

    @Test("shutdown refuses new work with a typed error, completes queued work, and returns")
    func shutdown() async throws {
        let pool = BlockingPool(name: "sb-stop", threadCount: 1, queueCapacity: 2)
        let gate = Gate()
        let blocker = Task {
            try await pool.run {
                gate.wait()
                return 0
            }
        }
        try await waitUntil("the blocker runs") { pool.statistics.runningWork == 1 }
        let queued = (1...4).map { index in Task { try await pool.run { index } } }
        try await waitUntil("two queued, two waiting for room") {
            pool.statistics.queuedWork == 2 && pool.statistics.awaitingAdmission == 2
        }
        let shutdown = Task { await pool.shutdownGracefully() }
        try await waitUntil("shutdown began") { pool.statistics.isShutDown }
        let error = await #expect(throws: ExecutorError.self) { try await pool.run { -1 } }
        #expect(error?.code == .shutDown)
        #expect(error?.executorName == "sb-stop")

        gate.open()
        #expect(try await blocker.value == 0)
        for (offset, task) in queued.enumerated() {
            #expect(try await task.value == offset + 1)
        }
        try await withDeadline { await shutdown.value }
    }

    @Test("a task blocked in pool.run leaves the cooperative pool free")
    func cooperativePoolStaysFree() async throws {
        // More blocked callers than the cooperative pool has threads.
        let blockedCount = ProcessInfo.processInfo.activeProcessorCount * 2 + 2
        let pool = BlockingPool(name: "sb-free", threadCount: blockedCount)
        let gate = Gate()
        let blockers = (0..<blockedCount).map { _ in Task { try await pool.run { gate.wait() } } }
        try await waitUntil("every blocker runs") { pool.statistics.runningWork == blockedCount }
        // Other tasks still make progress: if the blockers held cooperative threads, this would
        // hang until the deadline.
        let sum = try await withDeadline {
            await withTaskGroup(of: Int.self) { group in
                for value in 1...200 {
                    group.addTask {
                        await Task.yield()
                        return value
                    }
                }
                return await group.reduce(0, +)
            }
        }
        #expect(sum == 20_100)
        #expect(pool.statistics.runningWork == blockedCount)
        gate.open()
        for blocker in blockers { try await blocker.value }
        await pool.shutdownGracefully()
    }

    @Test("as a task executor it runs a task's nonisolated code on its threads")
    func taskExecutorPreference() async throws {
        let pool = BlockingPool(name: "sb-pref", threadCount: 2)
        let names = await withTaskExecutorPreference(pool) {
            await withTaskGroup(of: String.self) { group in
                for _ in 0..<10 {
                    group.addTask { await Self.currentThreadName() }
                }
                return await group.reduce(into: [String]()) { $0.append($1) }
            }
        }
        #expect(names.count == 10)
        #expect(names.allSatisfy { $0.hasPrefix("sb-pref-") })
        await pool.shutdownGracefully()
    }

    nonisolated static func currentThreadName() async -> String {
        ThreadIdentity.current.name
    }
}
