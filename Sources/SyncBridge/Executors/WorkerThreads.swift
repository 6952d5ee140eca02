import CSyncBridgeShims
import Logging
import Metrics
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The engine under ``ThreadExecutor`` and ``BlockingPool``: a set of named OS threads serving
/// one queue of runtime jobs and submitted closures. A single-thread engine may let its thread
/// retire when idle (`retireAfterNanoseconds`); the next job starts a new one with the same name.
///
/// The queue's state is a ``WorkQueueState`` guarded by `lock`; this class performs the actions
/// the state machine returns (wake threads, resume submitters, run jobs) outside the lock.
final class WorkerThreads: @unchecked Sendable {
    // Safe to share: every `var` below is read and written with `lock` held, except `runner`,
    // which is written once in `start` before any thread exists and only read afterwards.

    /// How to run a runtime job: on a serial executor (actor isolation) or a task executor.
    enum Runner {
        case serial(UnownedSerialExecutor, UnownedTaskExecutor)
        case task(UnownedTaskExecutor)
    }

    /// Which public type owns this engine, for messages.
    enum Kind: String, Sendable {
        case threadExecutor = "ThreadExecutor"
        case blockingPool = "BlockingPool"
    }

    let name: String
    let kind: Kind
    let threadCount: Int
    let logger: Logger
    let lock = ConditionLock()
    var state: WorkQueueState<UnownedJob>
    private var runner: Runner?
    private var shutdownWaiters: [UnsafeContinuation<Void, Never>] = []
    /// Signalled once when the last thread exits, for synchronous shutdown waiters.
    private let stopped = ConditionLock()
    /// Guarded by `stopped`.
    private var isStopped = false
    /// Guarded waits that block one of these threads right now.
    var blockedWaits: [GuardedWaitRecord] = []
    /// `blockedWaits.count`, readable without the lock: submitters read the guarded-wait task
    /// local only when it is not zero, which keeps that lookup off the hot path.
    let blockedWaitCount = Atomic<Int>(0)
    private let metrics: WorkQueueMetrics
    /// `state.entries.count`, readable without the lock by a spinning thread.
    private let entryCount = Atomic<Int>(0)
    /// Whether one thread is spinning for work right now (at most one does).
    private var spinningThread = false
    /// How long an idle thread spins for new work before it parks.
    let spinNanoseconds: UInt64
    /// How long the thread stays parked without work before it exits, or `nil` to keep it.
    let retireAfterNanoseconds: UInt64?
    /// Each thread's name, by index; written in `start` before any thread exists.
    var threadNames: [String] = []
    /// What each thread runs right now, by index (for snapshots).
    var runningJobs: [RunningJob?]

    init(
        name: String,
        kind: Kind,
        threadCount: Int,
        queueCapacity: Int,
        spin: Duration,
        retireAfter: Duration? = nil,
        metricsFactory: any MetricsFactory,
        logger: Logger
    ) {
        precondition(
            retireAfter == nil || threadCount == 1,
            "SyncBridge bug: only a single-thread engine lets its thread retire"
        )
        self.spinNanoseconds = UInt64(max(0, spin.nanosecondCount))
        self.retireAfterNanoseconds = retireAfter.map { UInt64(max(0, $0.nanosecondCount)) }
        self.name = name
        self.kind = kind
        self.threadCount = threadCount
        self.logger = logger
        self.state = WorkQueueState(threadCount: threadCount, capacity: queueCapacity)
        self.runningJobs = Array(repeating: nil, count: threadCount)
        self.metrics = WorkQueueMetrics(name: name, kind: kind, factory: metricsFactory)
    }

    /// Starts the threads. `threadName(i)` names thread `i` (the kernel keeps 15 bytes).
    func start(runner: Runner, threadName: (Int) -> String) {
        precondition(self.runner == nil, "SyncBridge bug: worker threads started twice")
        _ = Watchdog.environment  // starts the watchdog SYNCBRIDGE_WATCHDOG asks for, once
        _ = DeadlockDetector.environment  // and the detector SYNCBRIDGE_DEADLOCK asks for
        self.runner = runner
        threadNames = (0..<threadCount).map(threadName)
        SnapshotRegistry.add(self)
        for index in 0..<threadCount {
            startThread(index: index)
        }
        logger.debug(
            "started",
            metadata: ["executor": "\(name)", "kind": "\(kind.rawValue)", "threads": "\(threadCount)"]
        )
    }

    /// Starts thread `index`, counted live in `state` already.
    private func startThread(index: Int) {
        let thread = WorkerThread(group: self, index: index, name: threadNames[index])
        let context = Unmanaged.passRetained(thread).toOpaque()
        var handle = pthread_t()
        let result = sb_thread_create(
            &handle,
            { context in
                let thread = Unmanaged<WorkerThread>.fromOpaque(context!).takeRetainedValue()
                thread.group.serve(on: thread)
                return nil
            },
            context,
            0
        )
        precondition(result == 0, "\(kind.rawValue) '\(name)': pthread_create failed with \(result)")
        pthread_detach(handle)
    }

    /// Performs a ``WorkQueueState/Wake`` outside the lock.
    private func perform(_ wake: WorkQueueState<UnownedJob>.Wake) {
        switch wake {
        case .none:
            break
        case .parkedThread:
            lock.signal()
        case .newThread:
            // Only a single-thread engine retires its thread, so the new one is thread 0.
            startThread(index: 0)
        }
    }

    // MARK: Submitting

    /// Enqueues a job of Swift's runtime. Never blocks and never refuses while a thread lives.
    func enqueue(_ job: UnownedJob) {
        lock.lock()
        let action = state.enqueue(job)
        entryCount.store(state.entries.count, ordering: .relaxed)
        let deadlocked = blockedWaitCount.load(ordering: .relaxed) > 0 ? deadlockedWait(forJob: job) : nil
        let blocked = deadlocked.map(claimForRefusal) ?? []
        lock.unlock()
        switch action {
        case .queued(let wake):
            perform(wake)
        case .stopped:
            runAfterStop(job)
        }
        if let deadlocked { refuse(deadlocked, blocked: blocked) }
    }

    /// Runs `body` on one of the threads and returns its result to the suspended caller; `site`
    /// and `detail` describe the work in snapshots. The thread acts for `origin`'s task: the
    /// caller's, unless it took its origin earlier (before waiting for its turn elsewhere).
    func submit<Success>(
        actingFor origin: JobOrigin = .current(),
        at site: CallSite? = nil,
        detail: (any CustomStringConvertible & Sendable)? = nil,
        _ body: sending @escaping (BlockingJobContext) throws -> sending Success
    ) async throws -> sending Success {
        let neededBy = blockedWaitCount.load(ordering: .relaxed) > 0 ? GuardedWaitRecord.awaitedBy : nil
        let item = TypedWorkItem(body: body, neededBy: neededBy, submittedAt: monotonicNanoseconds())
        item.site = site
        item.detail = detail
        // The deadlock detector sees the thread that runs the closure act for this task.
        item.attribute(to: origin)
        // What the job did on its thread happens before what the task does next: the continuation
        // guarantees it, and the annotation shows it to ThreadSanitizer (a no-op otherwise).
        defer { sb_tsan_acquire(Unmanaged.passUnretained(item).toOpaque()) }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                item.continuation = continuation
                lock.lock()
                let action = state.submit(item)
                entryCount.store(state.entries.count, ordering: .relaxed)
                let deadlocked = neededBy.flatMap { deadlockedWait(neededBy: $0) }
                let blocked = deadlocked.map(claimForRefusal) ?? []
                let depth = state.entries.count + state.awaitingAdmissionCount
                lock.unlock()
                metrics.queueDepth.set(depth)
                switch action {
                case .queued(let wake):
                    perform(wake)
                case .awaitingAdmission:
                    logger.trace("queue full, submitter waits for room", metadata: ["executor": "\(name)"])
                case .cancelled:
                    item.resume(throwing: CancellationError())
                case .rejected:
                    metrics.rejected.increment()
                    item.resume(throwing: ExecutorError(code: .shutDown, executorName: name, kind: kind))
                }
                if let deadlocked { refuse(deadlocked, blocked: blocked) }
            }
        } onCancel: {
            cancel(item)
        }
    }

    /// Queues `body` without waiting for it: it runs after everything submitted before this call
    /// and before everything submitted after it. Returns `false` when the queue no longer accepts
    /// work (then `body` never runs).
    ///
    /// With an `origin`, the thread that runs `body` acts for that task, as it does for awaited
    /// work: the deadlock detector sees it do so, and `body` runs with the task's report scope
    /// and tracing context (its wait recorded from when the task asked). `site` and `detail`
    /// describe the work in snapshots.
    func submitDetached(
        actingFor origin: JobOrigin? = nil,
        at site: CallSite? = nil,
        detail: (any CustomStringConvertible & Sendable)? = nil,
        _ body: sending @escaping (BlockingJobContext) -> Void
    ) -> Bool {
        let item = DetachedWorkItem(body: body, submittedAt: monotonicNanoseconds())
        item.site = site
        item.detail = detail
        if let origin { item.attribute(to: origin) }
        lock.lock()
        let action = state.submit(item)
        entryCount.store(state.entries.count, ordering: .relaxed)
        lock.unlock()
        switch action {
        case .queued(let wake):
            perform(wake)
            return true
        case .awaitingAdmission:
            return true
        case .cancelled, .rejected:
            return false
        }
    }

    private func cancel(_ item: WorkItem) {
        lock.lock()
        let action = state.cancel(item)
        entryCount.store(state.entries.count, ordering: .relaxed)
        lock.unlock()
        switch action {
        case .none:
            break
        case .resumeCancelled:
            item.resume(throwing: CancellationError())
        case .interrupt(let handler):
            handler()
            lock.withLock { state.interruptFinished(item) }
        }
    }

    // MARK: Interrupt handlers (BlockingJobContext)

    func isCancelled(_ item: WorkItem) -> Bool {
        lock.withLock { item.cancellationRequested }
    }

    /// Installs `handler`; returns `false` (installing nothing) when the item is already cancelled.
    func installInterruptHandler(_ handler: @escaping @Sendable () -> Void, on item: WorkItem) -> Bool {
        lock.withLock {
            precondition(item.interruptHandler == nil, "withInterruptHandler calls must not be nested")
            guard !item.cancellationRequested else { return false }
            item.interruptHandler = handler
            return true
        }
    }

    /// Removes the handler; if a canceller is running it right now, waits until it returns so
    /// that nothing the handler uses is torn down under it.
    func removeInterruptHandler(on item: WorkItem) {
        lock.lock()
        item.interruptHandler = nil
        while item.interruptInProgress {
            lock.unlock()
            sched_yield()
            lock.lock()
        }
        lock.unlock()
    }

    // MARK: The threads

    private func serve(on thread: WorkerThread) {
        sb_set_current_worker(Unmanaged.passUnretained(thread).toOpaque())
        _ = sb_set_current_thread_name(thread.name)
        defer { sb_set_current_worker(nil) }
        var spunSinceLastWork = false
        lock.lock()
        while true {
            let next = state.next()
            entryCount.store(state.entries.count, ordering: .relaxed)
            switch next {
            case .park:
                // Waking a parked thread costs a futex wake and, on virtual machines, a halted
                // vCPU's wake-up: tens of microseconds. One thread spins briefly instead, which
                // catches the next job of a caller that submits them one after another.
                if spinNanoseconds > 0 && !spunSinceLastWork && !spinningThread && SpinBudget.reserve() {
                    spinningThread = true
                    lock.unlock()
                    spinForWork()
                    SpinBudget.release()
                    lock.lock()
                    spinningThread = false
                    spunSinceLastWork = true
                    continue
                }
                state.parked()
                if let retireAfterNanoseconds {
                    let signalled = lock.wait(
                        untilMonotonicNanoseconds: monotonicNanoseconds() &+ retireAfterNanoseconds
                    )
                    state.unparked()
                    if !signalled && state.retire() {
                        lock.unlock()
                        logger.trace("idle thread retired", metadata: ["executor": "\(name)"])
                        return
                    }
                } else {
                    lock.wait()
                    state.unparked()
                }
            case .run(let entry):
                spunSinceLastWork = false
                let depth = state.entries.count + state.awaitingAdmissionCount
                let start = monotonicNanoseconds()
                runningJobs[thread.index] = RunningJob(entry, since: start)
                lock.unlock()
                run(entry, depth: depth, start: start)
                lock.lock()
                runningJobs[thread.index] = nil
            case .exit(let lastThread):
                let waiters = lastThread ? takeShutdownWaiters() : []
                lock.unlock()
                if lastThread {
                    logger.debug("stopped", metadata: ["executor": "\(name)", "kind": "\(kind.rawValue)"])
                    metrics.queueDepth.set(0)
                }
                if lastThread {
                    SnapshotRegistry.remove(self)
                    stopped.withLock { isStopped = true }
                    stopped.broadcast()
                }
                for waiter in waiters { waiter.resume() }
                return
            }
        }
    }

    /// Spins until an entry is queued or `spinNanoseconds` pass.
    private func spinForWork() {
        let deadline = monotonicNanoseconds() &+ spinNanoseconds
        while entryCount.load(ordering: .relaxed) == 0 {
            for _ in 0..<32 { sb_cpu_relax() }
            if monotonicNanoseconds() >= deadline { return }
        }
    }

    private func run(_ entry: WorkQueueState<UnownedJob>.Entry, depth: Int, start: UInt64) {
        switch entry {
        case .job(let job):
            switch runner! {
            case .serial(let serialExecutor, let taskExecutor):
                job.runSynchronously(isolatedTo: serialExecutor, taskExecutor: taskExecutor)
            case .task(let taskExecutor):
                job.runSynchronously(on: taskExecutor)
            }
        case .work(let item):
            metrics.queueDepth.set(depth)
            metrics.waitDuration.recordNanoseconds(Int64(start &- item.submittedAt))
            let submitter = item.submitter
            if submitter != 0 { sb_set_job_submitter(submitter) }
            defer { if submitter != 0 { sb_set_job_submitter(0) } }
            if let trace = item.trace {
                trace.run(on: name, kind: kind.rawValue) { executeInScope(item) }
            } else {
                executeInScope(item)
            }
            // After the submitter resumed: off the hop's critical path.
            metrics.runDuration.recordNanoseconds(Int64(monotonicNanoseconds() &- start))
        }
    }

    private func executeInScope(_ item: WorkItem) {
        if let scope = item.scope {
            WatchdogScope.$current.withValue(scope) { execute(item) }
        } else {
            execute(item)
        }
    }

    private func execute(_ item: WorkItem) {
        item.execute(context: BlockingJobContext(item: item, workers: self)) {
            lock.lock()
            while item.interruptInProgress {
                lock.unlock()
                sched_yield()
                lock.lock()
            }
            state.finished(item)
            lock.unlock()
        }
    }

    private func runAfterStop(_ job: UnownedJob) {
        switch runner! {
        case .serial:
            fatalError(
                """
                \(kind.rawValue) '\(name)' received a job after it shut down: an actor that uses it \
                as its executor is still running code. Shut the executor down only after the \
                actors that use it are done.
                """
            )
        case .task:
            logger.error(
                "a task with this executor preference resumed after shutdown; running it on the global concurrent executor",
                metadata: ["executor": "\(name)", "kind": "\(kind.rawValue)"]
            )
            job.runSynchronously(on: globalConcurrentExecutor.asUnownedTaskExecutor())
        }
    }

    // MARK: Shutdown

    /// Refuses new work, lets queued work finish, and returns once every thread has exited.
    func shutdownGracefully() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            lock.lock()
            let action = state.shutdown()
            if action != .none {
                // Logged before any thread can see the new state, so "stopped" always follows.
                logger.debug("shutting down", metadata: ["executor": "\(name)", "kind": "\(kind.rawValue)"])
            }
            if state.lifecycle == .stopped {
                lock.unlock()
                continuation.resume()
                return
            }
            shutdownWaiters.append(continuation)
            lock.unlock()
            perform(action)
        }
    }

    /// Starts a graceful shutdown without waiting for it.
    func beginShutdown() {
        lock.lock()
        let action = state.shutdown()
        if action != .none {
            logger.debug("shutting down", metadata: ["executor": "\(name)", "kind": "\(kind.rawValue)"])
        }
        lock.unlock()
        perform(action)
    }

    /// Performs a ``WorkQueueState/ShutdownAction`` outside the lock.
    private func perform(_ action: WorkQueueState<UnownedJob>.ShutdownAction) {
        switch action {
        case .none:
            break
        case .wakeThreads:
            lock.broadcast()
        case .startThread:
            startThread(index: 0)
        }
    }

    /// Blocks the calling thread until every thread has exited (after `beginShutdown`).
    func waitUntilStopped() {
        stopped.lock()
        while !isStopped { stopped.wait() }
        stopped.unlock()
    }

    private func takeShutdownWaiters() -> [UnsafeContinuation<Void, Never>] {
        defer { shutdownWaiters = [] }
        return shutdownWaiters
    }

    // MARK: Introspection

    var isCurrent: Bool { WorkerThread.current?.group === self }

    var statistics: ExecutorStatistics {
        lock.withLock {
            ExecutorStatistics(
                threadCount: state.liveThreads,
                queueCapacity: state.capacity,
                queuedWork: state.queuedWorkCount,
                awaitingAdmission: state.awaitingAdmissionCount,
                runningWork: state.runningWorkCount,
                idleThreads: state.idleThreads,
                isShutDown: state.lifecycle != .running
            )
        }
    }
}
