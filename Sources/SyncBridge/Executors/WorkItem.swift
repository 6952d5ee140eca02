import CSyncBridgeShims

/// One closure submitted with `run` to a ``BlockingPool`` or a ``ThreadExecutor``, with the state
/// that cancellation and interruption need.
///
/// Every mutable field is read and written only with the owning queue's lock held (the
/// ``WorkQueueState`` functions and ``WorkerThreads``), which is what makes sharing it safe.
class WorkItem: @unchecked Sendable {
    /// Where the item is in its life. Transitions happen under the owning queue's lock.
    enum Phase: Equatable {
        /// Created, not yet handed to the queue.
        case new
        /// Waiting for room in a full queue (backpressure).
        case awaitingAdmission
        /// In the queue, waiting for a thread.
        case queued
        /// A thread is running it.
        case running
        /// Ran to completion (successfully or not).
        case finished
        /// Cancelled before it started: it never runs.
        case cancelled
    }

    final var phase: Phase = .new
    /// The submitting task was cancelled (at any phase).
    final var cancellationRequested = false
    /// Installed by `BlockingJobContext.withInterruptHandler` while the body runs.
    final var interruptHandler: (@Sendable () -> Void)?
    /// An interrupt handler is executing right now (outside the lock).
    final var interruptInProgress = false
    /// The guarded wait whose awaited work submitted this item, if any.
    final let neededBy: GuardedWaitRecord?
    /// When it was submitted (monotonic nanoseconds): the start of its queue wait.
    final let submittedAt: UInt64
    /// The submitting task's address while a deadlock detector runs, 0 otherwise. Written before
    /// the item is published to the queue.
    final var submitter: UInt = 0
    /// The submitting task's report scope (a test's) while a deadlock detector runs: the closure
    /// runs in it, so that what it does is reported to that scope.
    final var scope: UInt64?
    /// The submitting task's tracing context, when it had one.
    final var trace: JobTrace?
    /// Where the work was submitted, for snapshots, when the submitter said. Written before the
    /// item is published to the queue.
    final var site: CallSite?
    /// What the work is, for snapshots (a statement's parameterised SQL), when the submitter
    /// said. Written before the item is published to the queue.
    final var detail: (any CustomStringConvertible & Sendable)?

    init(neededBy: GuardedWaitRecord?, submittedAt: UInt64) {
        self.neededBy = neededBy
        self.submittedAt = submittedAt
    }

    /// Runs the body on the current (worker) thread and resumes the submitter. Called once.
    func execute(context: BlockingJobContext, finish: () -> Void) {}

    /// Resumes the submitter with `error` without running the body. Called at most once,
    /// and never together with `execute`.
    func resume(throwing error: any Error) {}
}

/// A ``WorkItem`` whose body returns `Success` to a suspended submitter.
final class TypedWorkItem<Success>: WorkItem, @unchecked Sendable {
    // Safe to share for the same reason as `WorkItem`: `continuation` is written once before
    // the item is published to the queue (the lock orders it), `body` is consumed on the one
    // thread that runs the item.
    private var body: ((BlockingJobContext) throws -> sending Success)?
    var continuation: UnsafeContinuation<Success, any Error>?

    init(
        body: sending @escaping (BlockingJobContext) throws -> sending Success,
        neededBy: GuardedWaitRecord?,
        submittedAt: UInt64
    ) {
        self.body = body
        super.init(neededBy: neededBy, submittedAt: submittedAt)
    }

    override func execute(context: BlockingJobContext, finish: () -> Void) {
        guard let body = self.body, let continuation = self.continuation else {
            preconditionFailure("SyncBridge bug: work item executed twice")
        }
        self.body = nil
        self.continuation = nil
        do {
            let value = try body(context)
            finish()
            sb_tsan_release(Unmanaged.passUnretained(self).toOpaque())
            continuation.resume(returning: value)
        } catch {
            finish()
            sb_tsan_release(Unmanaged.passUnretained(self).toOpaque())
            continuation.resume(throwing: error)
        }
    }

    override func resume(throwing error: any Error) {
        guard let continuation = self.continuation else {
            preconditionFailure("SyncBridge bug: work item resumed twice")
        }
        self.continuation = nil
        self.body = nil
        continuation.resume(throwing: error)
    }
}

/// A ``WorkItem`` nobody waits for: enqueued synchronously (for clean-up that must be ordered
/// before whatever the caller submits next), never cancelled.
final class DetachedWorkItem: WorkItem, @unchecked Sendable {
    // Safe to share for the same reason as `WorkItem`; `body` is consumed on the one thread that
    // runs the item.
    private var body: ((BlockingJobContext) -> Void)?

    init(body: sending @escaping (BlockingJobContext) -> Void, submittedAt: UInt64) {
        self.body = body
        super.init(neededBy: nil, submittedAt: submittedAt)
    }

    override func execute(context: BlockingJobContext, finish: () -> Void) {
        let body = self.body
        self.body = nil
        body?(context)
        finish()
    }

    override func resume(throwing error: any Error) {
        body = nil
    }
}
