public import Logging
public import Metrics

/// A fixed set of dedicated, named OS threads for blocking work: C client calls, file I/O,
/// legacy synchronous code. Async callers hand it closures and suspend until they finish, so
/// Swift's cooperative pool never blocks.
///
/// ```swift
/// let pool = BlockingPool(name: "legacy-io", threadCount: 8)
/// let report = try await pool.run { try LegacyReports.build(for: customer) }
/// ```
///
/// - **Backpressure**: at most `queueCapacity` closures wait for a thread; further submitters stay
///   suspended until there is room, in order. Nothing is dropped.
/// - **Cancellation**: a closure whose task is cancelled before it starts never runs (the caller
///   gets `CancellationError`); a running one sees it through ``BlockingJobContext`` and can
///   install an interrupt handler that the pool calls from the cancelling thread.
/// - **Task executor**: `withTaskExecutorPreference(pool) { … }` runs a task's nonisolated async
///   code on the pool's threads, for code that blocks between awaits.
/// - **Shutdown**: ``shutdownGracefully()`` refuses new work with ``ExecutorError/Code/shutDown``
///   and lets queued work finish.
/// - **Metrics** (swift-metrics), dimensioned by `executor` (the name) and `kind`:
///   `syncbridge.executor.queue_depth` (meter), `syncbridge.executor.wait_duration` and
///   `syncbridge.executor.run_duration` (timers), `syncbridge.executor.rejected` (counter).
///
/// Every thread is a real OS thread: size the pool for the number of blocking calls that may be
/// in flight at once, not for the number of CPUs. For work that does not block, plain Swift
/// concurrency is the better tool.
public final class BlockingPool: TaskExecutor, Sendable {
    let workers: WorkerThreads

    /// The pool's name; its threads are named `<name>-<index>` (the kernel keeps 15 bytes).
    public var name: String { workers.name }

    /// How many threads the pool runs.
    public var threadCount: Int { workers.threadCount }

    /// Starts the threads.
    ///
    /// - Parameters:
    ///   - name: Names the pool and its threads, for stack dumps, logs, metrics and errors.
    ///   - threadCount: How many blocking calls can run at once.
    ///   - queueCapacity: How many submitted closures may wait for a thread before submitters
    ///     suspend until there is room. Default: 1,024 per thread.
    ///   - spinBeforeParking: How long an idle thread keeps looking for new work before it sleeps.
    ///     Waking a sleeping thread costs tens of microseconds on virtual machines; spinning
    ///     catches the next job of callers that submit one after another, at the price of that
    ///     much CPU time after each burst of work. At most one thread spins at a time. `.zero`
    ///     turns spinning off.
    ///   - metricsFactory: Where the queue metrics go; the process's bootstrapped factory by default.
    ///   - logger: Receives start, shutdown and misuse reports.
    public init(
        name: String,
        threadCount: Int,
        queueCapacity: Int? = nil,
        spinBeforeParking: Duration = .microseconds(50),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        logger: Logger = Logger(label: "SyncBridge.BlockingPool")
    ) {
        precondition(threadCount > 0, "BlockingPool '\(name)' needs at least one thread")
        workers = WorkerThreads(
            name: name,
            kind: .blockingPool,
            threadCount: threadCount,
            queueCapacity: queueCapacity ?? 1024 * threadCount,
            spin: spinBeforeParking,
            metricsFactory: metricsFactory,
            logger: logger
        )
        workers.start(runner: .task(UnownedTaskExecutor(ordinary: self)), threadName: { "\(name)-\($0)" })
    }

    /// Enqueues a job of Swift's runtime (from a task that prefers this executor); called by the
    /// runtime, not by users.
    public func enqueue(_ job: consuming ExecutorJob) {
        workers.enqueue(UnownedJob(job))
    }

    /// This pool as an unowned task executor.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Whether the calling thread is one of this pool's threads.
    public var isCurrent: Bool {
        workers.isCurrent
    }

    /// A snapshot of the queue.
    public var statistics: ExecutorStatistics {
        workers.statistics
    }

    /// Runs a blocking closure on one of the pool's threads.
    ///
    /// - Parameters:
    ///   - fileID: The call site, which snapshots show while the closure runs; leave the default.
    ///   - line: The call site, which snapshots show while the closure runs; leave the default.
    ///   - body: The blocking work. The calling task is suspended meanwhile.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws; `CancellationError` if the calling task was cancelled before
    ///   `body` started (then `body` never runs); ``ExecutorError`` with code
    ///   ``ExecutorError/Code/shutDown`` once shutdown has begun.
    public func run<Success>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: sending @escaping () throws -> sending Success
    ) async throws -> sending Success {
        try await workers.submit(at: CallSite(fileID: fileID, line: line)) { _ in try body() }
    }

    /// Runs a blocking closure on one of the pool's threads, with a ``BlockingJobContext`` that
    /// tells it about cancellation and lets it install an interrupt handler.
    ///
    /// - Parameters:
    ///   - fileID: The call site, which snapshots show while the closure runs; leave the default.
    ///   - line: The call site, which snapshots show while the closure runs; leave the default.
    ///   - body: The blocking work.
    /// - Returns: What `body` returns.
    /// - Throws: As ``run(fileID:line:_:)-(_,_,()->Success)``.
    public func run<Success>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: sending @escaping (BlockingJobContext) throws -> sending Success
    ) async throws -> sending Success {
        try await workers.submit(at: CallSite(fileID: fileID, line: line), body)
    }

    /// Queues `body` on one of the pool's threads without waiting for it, from synchronous code:
    /// for work nobody awaits (a service loop, a cancel request). `false` once the pool is shut
    /// down (`body` then never runs).
    @discardableResult
    package func runDetached(at site: CallSite? = nil, _ body: sending @escaping () -> Void) -> Bool {
        workers.submitDetached(at: site) { _ in body() }
    }

    /// The error of work refused because the pool is shut down.
    package var shutDownError: ExecutorError {
        ExecutorError(code: .shutDown, executorName: name, kind: .blockingPool)
    }

    /// Refuses new closures, lets queued work finish, and returns once every thread has exited.
    public func shutdownGracefully() async {
        await workers.shutdownGracefully()
    }

    /// Blocking form of ``shutdownGracefully()`` for synchronous code.
    ///
    /// - Throws: ``GuardedWaitError`` when called on one of the pool's own threads;
    ///   ``BlockingCallError`` on a cooperative thread under ``Blocking/Policy/throwError`` (under
    ///   the default policy the call is reported and goes ahead).
    @available(*, noasync, message: "blocks the calling thread", renamed: "shutdownGracefully()")
    public func syncShutdownGracefully(fileID: StaticString = #fileID, line: UInt = #line) throws {
        try Blocking.check("BlockingPool.syncShutdownGracefully", callSite: CallSite(fileID: fileID, line: line))
        if isCurrent {
            if WaitGraph.isActive {
                let report = BridgingReports.selfWait(
                    "BlockingPool.syncShutdownGracefully",
                    executor: name,
                    kind: .blockingPool,
                    at: CallSite(fileID: fileID, line: line),
                    thread: .current
                )
                DeadlockDetector.report(report, refusing: true)
            }
            throw GuardedWaitError(
                reason: .awaitedWorkNeedsBlockedThread(executor: name, kind: .blockingPool),
                callSite: CallSite(fileID: fileID, line: line),
                thread: ThreadIdentity.current
            )
        }
        workers.beginShutdown()
        workers.waitUntilStopped()
    }
}

extension BlockingPool: CustomStringConvertible {
    /// `BlockingPool(name, N threads)`.
    public var description: String { "BlockingPool(\(name), \(threadCount) threads)" }
}
