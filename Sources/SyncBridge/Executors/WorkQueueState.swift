import DequeModule

/// The state of a work queue served by a set of threads: the entries waiting for a thread, the
/// submitters waiting for room, idle and live threads, and the lifecycle.
///
/// Every thread is live from the start. An owner that lets idle threads retire (``retire()``)
/// is told to start one again when work arrives and no thread is free (``Wake/newThread``).
///
/// A pure state machine: every event returns the action its owner (``WorkerThreads``) must
/// perform outside the lock. `Job` is `UnownedJob` in production and any type in unit tests.
struct WorkQueueState<Job> {
    /// What waits for a thread.
    enum Entry {
        /// A job from Swift's runtime (an actor hop or a task-executor preference).
        case job(Job)
        /// A closure submitted with `run`.
        case work(WorkItem)
    }

    enum Lifecycle: Equatable {
        /// Accepting work.
        case running
        /// Refusing new work, finishing what is queued.
        case draining
        /// Every thread has exited.
        case stopped
    }

    /// Who runs an entry just queued.
    enum Wake: Equatable {
        /// A live thread that is busy, or spinning, will find it.
        case none
        /// Signal a parked thread.
        case parkedThread
        /// No thread is free and one retired: start a thread (already counted live).
        case newThread
    }

    enum SubmitAction {
        /// Queued; `wake` says who runs it.
        case queued(Wake)
        /// The queue is full: the item waits for room, its submitter stays suspended.
        case awaitingAdmission
        /// The submitter was cancelled before the item was queued: resume it with
        /// `CancellationError`.
        case cancelled
        /// The queue no longer accepts work.
        case rejected
    }

    enum EnqueueAction {
        case queued(Wake)
        /// Every thread has exited: the job cannot run here.
        case stopped
    }

    enum CancelAction {
        case none
        /// The item had not started: resume its submitter with `CancellationError`.
        case resumeCancelled
        /// The item is running with an interrupt handler: call it (then `interruptFinished`).
        case interrupt(@Sendable () -> Void)
    }

    enum NextAction {
        case run(Entry)
        /// Nothing to do: park until signalled (between `parked()` and `unparked()` the thread is
        /// counted idle, and submitters wake it).
        case park
        /// Draining is complete: the thread exits. `lastThread` is set for the final one.
        case exit(lastThread: Bool)
    }

    enum ShutdownAction: Equatable {
        /// Shutdown had begun already.
        case none
        /// Wake every parked thread to drain and exit.
        case wakeThreads
        /// Every thread had retired: start one (already counted live), which drains and exits
        /// as the last thread.
        case startThread
    }

    let capacity: Int
    let threadCount: Int
    private(set) var entries = Deque<Entry>()
    private(set) var admissionQueue = Deque<WorkItem>()
    /// Work items in `entries` that will still run (cancelled ones stay as tombstones).
    private(set) var queuedWorkCount = 0
    /// Work items in `admissionQueue` that still wait for room.
    private(set) var awaitingAdmissionCount = 0
    private(set) var idleThreads = 0
    private(set) var liveThreads: Int
    private(set) var runningWorkCount = 0
    private(set) var lifecycle = Lifecycle.running

    init(threadCount: Int, capacity: Int) {
        precondition(threadCount > 0, "a work queue needs at least one thread")
        precondition(capacity > 0, "a work queue needs a capacity of at least one")
        self.threadCount = threadCount
        self.capacity = capacity
        self.liveThreads = threadCount
    }

    /// Work items submitted and not yet started (queued plus awaiting admission).
    var pendingWorkCount: Int {
        queuedWorkCount + awaitingAdmissionCount
    }

    mutating func submit(_ item: WorkItem) -> SubmitAction {
        precondition(item.phase == .new)
        guard lifecycle == .running else {
            item.phase = .cancelled
            return .rejected
        }
        if item.cancellationRequested {
            item.phase = .cancelled
            return .cancelled
        }
        if queuedWorkCount < capacity && admissionQueue.isEmpty {
            item.phase = .queued
            entries.append(.work(item))
            queuedWorkCount += 1
            return .queued(wake())
        }
        item.phase = .awaitingAdmission
        admissionQueue.append(item)
        awaitingAdmissionCount += 1
        return .awaitingAdmission
    }

    mutating func enqueue(_ job: Job) -> EnqueueAction {
        guard lifecycle != .stopped else { return .stopped }
        entries.append(.job(job))
        return .queued(wake())
    }

    /// Who runs the entry just queued: a parked thread, a new one when every live thread is busy
    /// and fewer than `threadCount` live, or the busy ones.
    private mutating func wake() -> Wake {
        if idleThreads > 0 { return .parkedThread }
        guard liveThreads < threadCount else { return .none }
        liveThreads += 1
        return .newThread
    }

    mutating func cancel(_ item: WorkItem) -> CancelAction {
        guard !item.cancellationRequested else { return .none }
        item.cancellationRequested = true
        switch item.phase {
        case .new, .finished, .cancelled:
            return .none
        case .awaitingAdmission:
            item.phase = .cancelled
            awaitingAdmissionCount -= 1
            return .resumeCancelled
        case .queued:
            item.phase = .cancelled
            queuedWorkCount -= 1
            admitWaitingWork()
            return .resumeCancelled
        case .running:
            guard let handler = item.interruptHandler else { return .none }
            item.interruptInProgress = true
            return .interrupt(handler)
        }
    }

    mutating func interruptFinished(_ item: WorkItem) {
        item.interruptInProgress = false
    }

    mutating func next() -> NextAction {
        if entries.isEmpty {
            admitWaitingWork()  // only cancelled tombstones can be left there; drop them
        }
        while let entry = entries.popFirst() {
            switch entry {
            case .job:
                return .run(entry)
            case .work(let item):
                guard item.phase == .queued else { continue }  // a cancelled tombstone
                item.phase = .running
                queuedWorkCount -= 1
                runningWorkCount += 1
                admitWaitingWork()
                return .run(entry)
            }
        }
        if lifecycle == .draining && admissionQueue.isEmpty {
            liveThreads -= 1
            if liveThreads == 0 { lifecycle = .stopped }
            return .exit(lastThread: liveThreads == 0)
        }
        return .park
    }

    /// A thread is about to wait for a signal.
    mutating func parked() {
        idleThreads += 1
    }

    /// A parked thread woke up.
    mutating func unparked() {
        idleThreads -= 1
    }

    mutating func finished(_ item: WorkItem) {
        precondition(item.phase == .running)
        item.phase = .finished
        item.interruptHandler = nil
        runningWorkCount -= 1
    }

    /// A thread whose wait for work timed out asks to retire. Returns `true` when it may exit:
    /// nothing is queued and the queue is running (a draining queue's threads exit through
    /// ``next()``). The next entry queued starts a thread again.
    mutating func retire() -> Bool {
        guard lifecycle == .running, entries.isEmpty, admissionQueue.isEmpty else { return false }
        liveThreads -= 1
        return true
    }

    /// Stops accepting work.
    mutating func shutdown() -> ShutdownAction {
        guard lifecycle == .running else { return .none }
        lifecycle = .draining
        guard liveThreads > 0 else {
            liveThreads = 1
            return .startThread
        }
        return .wakeThreads
    }

    private mutating func admitWaitingWork() {
        while queuedWorkCount < capacity, let item = admissionQueue.popFirst() {
            guard item.phase == .awaitingAdmission else { continue }  // cancelled while waiting
            awaitingAdmissionCount -= 1
            item.phase = .queued
            entries.append(.work(item))
            queuedWorkCount += 1
        }
    }
}
