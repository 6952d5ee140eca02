import CBenchShims
import Foundation
import NIOPosix
import SyncBridge
import Synchronization
import Tracing

/// An actor on a ThreadExecutor whose method mutates state, so the hop cannot be optimised away.
actor Bumper {
    let executor: ThreadExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    var value = 0

    init(executor: ThreadExecutor) {
        self.executor = executor
    }

    func bump() -> Int {
        value &+= 1
        return value
    }
}

/// The round trip `await` → blocking thread → back, for SyncBridge and its peers, side by side.
func hopBenchmarks(rounds: Int, iterations: Int) async throws -> [Comparison] {
    let pool = BlockingPool(name: "bench-pool", threadCount: 1)
    let executor = ThreadExecutor(name: "bench-exec")
    let bumper = Bumper(executor: executor)
    let nioPool = NIOThreadPool(numberOfThreads: 1)
    nioPool.start()
    let pingPong = PthreadPingPong()
    let counter = Counter()

    func perOp(_ body: () async throws -> Void) async rethrows -> Double {
        let start = now()
        for _ in 0..<iterations { try await body() }
        return Double(now() - start) / Double(iterations)
    }

    let hop = try await compare(
        "Hop: await, run on a dedicated thread, come back (\(iterations) sequential calls per round)",
        unit: "ns per hop",
        rounds: rounds,
        [
            Contender(name: "pthread mutex+condvar ping-pong (floor)") {
                await onDedicatedThread { pingPong.run(iterations: iterations) }
            },
            Contender(name: "SyncBridge BlockingPool.run") {
                try await Task.detached { try await perOp { try await pool.run { counter.value &+= 1 } } }.value
            },
            // A request's context with no tracer (a traced server without a tracer bootstrapped):
            // the hop carries it to the thread and binds it there for the job.
            Contender(name: "SyncBridge BlockingPool.run in a ServiceContext") {
                try await Task.detached {
                    try await ServiceContext.withValue(.topLevel) {
                        try await perOp { try await pool.run { counter.value &+= 1 } }
                    }
                }.value
            },
            Contender(name: "SyncBridge ThreadExecutor actor method") {
                await Task.detached { await perOp { _ = await bumper.bump() } }.value
            },
            Contender(name: "SyncBridge ThreadExecutor.run") {
                try await Task.detached { try await perOp { try await executor.run { counter.value &+= 1 } } }.value
            },
            Contender(name: "NIOThreadPool.runIfActive") {
                try await Task.detached { try await perOp { try await nioPool.runIfActive { counter.value &+= 1 } } }
                    .value
            },
        ]
    )

    pingPong.shutdown()
    await pool.shutdownGracefully()
    await executor.shutdownGracefully()
    try await nioPool.shutdownGracefully()
    return [hop]
}

/// Total nanoseconds the blocking jobs really lasted, and how many ran: `nanosleep(1 ms)`
/// overshoots (timer slack, wake-up latency), so the ideal throughput is computed from this.
let jobNanoseconds = Atomic<Int>(0)
let jobCount = Atomic<Int>(0)

/// The blocking job of the throughput benchmark: sleeps 1 ms. It first sets its thread's timer
/// slack to 1 ns (Linux's default, 50 µs, alone makes a "1 ms" sleep last 1.05 ms or more), so that
/// the job lasts what it says; every contender runs the same job.
@Sendable func blockingJob() {
    _ = bench_set_timer_slack(1)
    let start = now()
    var duration = timespec(tv_sec: 0, tv_nsec: 1_000_000)
    nanosleep(&duration, nil)
    jobNanoseconds.add(Int(now() - start), ordering: .relaxed)
    jobCount.add(1, ordering: .relaxed)
}

/// The mean duration of a blocking job so far, in milliseconds.
func meanJobMilliseconds() -> Double {
    Double(jobNanoseconds.load(ordering: .relaxed)) / Double(max(1, jobCount.load(ordering: .relaxed))) / 1e6
}

/// 1,000 concurrent tasks, each running a 1 ms blocking job, on 8 threads.
func throughputBenchmarks(rounds: Int) async throws -> [Comparison] {
    let threads = 8
    let jobs = 1_000
    let pool = BlockingPool(name: "bench-tp", threadCount: threads)
    let nioPool = NIOThreadPool(numberOfThreads: threads)
    nioPool.start()

    func jobsPerMillisecond(_ submit: @escaping @Sendable () async throws -> Void) async throws -> Double {
        let start = now()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<jobs { group.addTask { try await submit() } }
            try await group.waitForAll()
        }
        return Double(jobs) / (Double(now() - start) / 1e6)
    }

    let throughput = try await compare(
        "Throughput: \(jobs) concurrent tasks x 1 ms blocking job on \(threads) threads",
        unit: "jobs per ms (ideal 8)",
        rounds: rounds,
        [
            Contender(name: "8 raw pthreads, 125 sleeps each (floor)") {
                let start = now()
                await withTaskGroup(of: Void.self) { group in
                    for _ in 0..<threads {
                        group.addTask {
                            await onDedicatedThread {
                                for _ in 0..<(jobs / threads) { blockingJob() }
                            }
                        }
                    }
                    await group.waitForAll()
                }
                return Double(jobs) / (Double(now() - start) / 1e6)
            },
            Contender(name: "SyncBridge BlockingPool.run") {
                try await jobsPerMillisecond { try await pool.run { blockingJob() } }
            },
            Contender(name: "NIOThreadPool.runIfActive") {
                try await jobsPerMillisecond { try await nioPool.runIfActive { blockingJob() } }
            },
        ]
    )
    await pool.shutdownGracefully()
    try await nioPool.shutdownGracefully()
    return [throughput]
}
