public import Logging
public import Metrics

/// One dedicated, named OS thread that runs jobs in order: a `SerialExecutor` for actors that own
/// thread-affine resources (a `PGconn*`, a `MYSQL*`), and a way to run blocking closures there.
///
/// Use it as an actor's executor so that every method of the actor runs on this one thread:
///
/// ```swift
/// actor LegacyConnection {
///     let executor: ThreadExecutor
///     nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
///     private var handle: OpaquePointer?
///     // every method runs on the thread `executor` owns
/// }
/// ```
///
/// or run closures on it directly with ``run(fileID:line:_:)-(_,_,()->Success)``, or hold a C handle there with
/// ``ThreadBound``.
///
/// Jobs run in the order they were enqueued, one at a time. The thread never runs Swift's
/// cooperative pool's work, so blocking calls on it stall nothing else.
///
/// Shut the executor down explicitly with ``shutdownGracefully()``: new closures are refused
/// with ``ExecutorError/Code/shutDown``, queued ones finish first. Do not shut it down while an
/// actor that uses it can still run: a job that arrives after the thread exited cannot run
/// anywhere else without breaking the actor's isolation, and stops the process with a message
/// that says so.
public final class ThreadExecutor: SerialExecutor, TaskExecutor, Sendable {
    let workers: WorkerThreads

    /// The executor's name; also the thread's name (the kernel keeps its first 15 bytes),
    /// which stack dumps and `/proc/<pid>/task/*/comm` show.
    public var name: String { workers.name }

    /// Starts the thread.
    ///
    /// - Parameters:
    ///   - name: Names the thread, for stack dumps, logs, metrics and errors.
    ///   - queueCapacity: How many submitted closures may wait before submitters suspend until
    ///     there is room. Jobs of Swift's runtime (actor hops) are never refused or delayed.
    ///   - spinBeforeParking: How long an idle thread keeps looking for new work before it sleeps.
    ///     Waking a sleeping thread costs tens of microseconds on virtual machines; spinning
    ///     catches the next job of callers that submit one after another, at the price of that
    ///     much CPU time after each burst of work. At most one thread spins at a time. `.zero`
    ///     turns spinning off.
    ///   - metricsFactory: Where the queue metrics go; the process's bootstrapped factory by default.
    ///   - logger: Receives start, shutdown and misuse reports.
    public convenience init(
        name: String,
        queueCapacity: Int = .max,
        spinBeforeParking: Duration = .microseconds(50),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        logger: Logger = Logger(label: "SyncBridge.ThreadExecutor")
    ) {
        self.init(
            name: name,
            queueCapacity: queueCapacity,
            spinBeforeParking: spinBeforeParking,
            retiringAfterIdle: nil,
            metricsFactory: metricsFactory,
            logger: logger
        )
    }

    /// Starts the thread, which exits once it has had no work for `retiringAfterIdle`; the next
    /// job starts a new thread with the same name. Jobs still run one at a time and in order, but
    /// not always on the same OS thread: only for resources that are not tied to a thread's
    /// identity (no thread-local state), such as a pooled connection whose statements other
    /// threads serve most of the time.
    package init(
        name: String,
        queueCapacity: Int = .max,
        spinBeforeParking: Duration = .microseconds(50),
        retiringAfterIdle: Duration?,
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        logger: Logger = Logger(label: "SyncBridge.ThreadExecutor")
    ) {
        workers = WorkerThreads(
            name: name,
            kind: .threadExecutor,
            threadCount: 1,
            queueCapacity: queueCapacity,
            spin: spinBeforeParking,
            retireAfter: retiringAfterIdle,
            metricsFactory: metricsFactory,
            logger: logger
        )
        workers.start(
            runner: .serial(UnownedSerialExecutor(ordinary: self), UnownedTaskExecutor(ordinary: self)),
            threadName: { _ in name }
        )
    }

    /// Enqueues a job of Swift's runtime; called by the runtime, not by users.
    public func enqueue(_ job: consuming ExecutorJob) {
        workers.enqueue(UnownedJob(job))
    }

    /// This executor as an unowned serial executor, for an actor's `unownedExecutor`.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// This executor as an unowned task executor.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Stops the process unless the calling thread is this executor's thread. Called by the
    /// runtime for `assumeIsolated` and isolation checks.
    public func checkIsolated() {
        precondition(
            isCurrent,
            "expected to run on ThreadExecutor '\(name)', but this is thread '\(ThreadIdentity.current)'"
        )
    }

    /// Whether the calling thread is this executor's thread.
    public func isIsolatingCurrentContext() -> Bool? {
        isCurrent
    }

    /// Whether the calling thread is this executor's thread.
    public var isCurrent: Bool {
        workers.isCurrent
    }

    /// A snapshot of the queue.
    public var statistics: ExecutorStatistics {
        workers.statistics
    }

    /// Runs a blocking closure on this executor's thread, after everything queued before it.
    ///
    /// - Parameters:
    ///   - fileID: The call site, which snapshots show while the closure runs; leave the default.
    ///   - line: The call site, which snapshots show while the closure runs; leave the default.
    ///   - body: The blocking work. It runs on the executor's thread; the calling task is
    ///   suspended meanwhile, and no cooperative thread is blocked.
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

    /// Runs a blocking closure on this executor's thread, with a ``BlockingJobContext`` that tells
    /// it about cancellation and lets it install an interrupt handler.
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

    /// Refuses new closures, lets queued work finish, and returns once the thread has exited.
    public func shutdownGracefully() async {
        await workers.shutdownGracefully()
    }

    /// Blocking form of ``shutdownGracefully()`` for synchronous code, such as `deinit`s and
    /// `main` before exit.
    ///
    /// - Throws: ``GuardedWaitError`` when called on this executor's own thread, which could never
    ///   see the queue drain; ``BlockingCallError`` on a cooperative thread under
    ///   ``Blocking/Policy/throwError`` (under the default policy the call is reported and goes
    ///   ahead).
    @available(*, noasync, message: "blocks the calling thread", renamed: "shutdownGracefully()")
    public func syncShutdownGracefully(fileID: StaticString = #fileID, line: UInt = #line) throws {
        try Blocking.check("ThreadExecutor.syncShutdownGracefully", callSite: CallSite(fileID: fileID, line: line))
        if isCurrent {
            if WaitGraph.isActive {
                let report = BridgingReports.selfWait(
                    "ThreadExecutor.syncShutdownGracefully",
                    executor: name,
                    kind: .threadExecutor,
                    at: CallSite(fileID: fileID, line: line),
                    thread: .current
                )
                DeadlockDetector.report(report, refusing: true)
            }
            throw GuardedWaitError(
                reason: .awaitedWorkNeedsBlockedThread(executor: name, kind: .threadExecutor),
                callSite: CallSite(fileID: fileID, line: line),
                thread: ThreadIdentity.current
            )
        }
        workers.beginShutdown()
        workers.waitUntilStopped()
    }
}

extension ThreadExecutor: CustomStringConvertible {
    /// `ThreadExecutor(name)`.
    public var description: String { "ThreadExecutor(\(name))" }
}
