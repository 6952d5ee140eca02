/// What a closure running on a ``BlockingPool`` or ``ThreadExecutor`` thread can ask about its
/// own job: whether the submitting task was cancelled, and how to be interrupted when it is.
///
/// Blocking calls cannot see Swift task cancellation by themselves. Install an interrupt handler
/// around such a call; when the submitting task is cancelled, the handler is called **from the
/// cancelling thread** (never the blocked one) so it can unblock the call: `PQcancel` for libpq,
/// `KILL QUERY` for MariaDB, closing a socket, signalling a condition.
///
/// ```swift
/// let rows = try await pool.run { job in
///     try job.withInterruptHandler({ cancelToken.cancel() }) {
///         try legacyClient.fetchAll()   // blocks; returns early once cancelled
///     }
/// }
/// ```
///
/// The context is only valid inside the closure it was passed to; it is not `Sendable`.
public struct BlockingJobContext {
    let item: WorkItem
    let workers: WorkerThreads

    /// Whether the task that submitted this job has been cancelled.
    public var isCancelled: Bool {
        workers.isCancelled(item)
    }

    /// Throws `CancellationError` when the submitting task has been cancelled.
    public func checkCancellation() throws {
        if isCancelled { throw CancellationError() }
    }

    /// The name of the executor running the job.
    public var executorName: String {
        workers.name
    }

    /// Runs `operation` with `handler` installed as the job's interrupt handler.
    ///
    /// If the submitting task is cancelled while `operation` runs, `handler` is called once, from
    /// the thread that cancelled the task. If the task was already cancelled, `handler` is called
    /// right away on this thread, before `operation` (as `withTaskCancellationHandler` does).
    /// When this function returns, the handler is not running and will not be called: anything
    /// it uses may be released.
    ///
    /// - Parameters:
    ///   - handler: Unblocks `operation`. Must be quick and must not block.
    ///   - operation: The blocking work.
    /// - Returns: What `operation` returns.
    public func withInterruptHandler<Result>(
        _ handler: @escaping @Sendable () -> Void,
        operation: () throws -> Result
    ) rethrows -> Result {
        guard workers.installInterruptHandler(handler, on: item) else {
            handler()
            return try operation()
        }
        defer { workers.removeInterruptHandler(on: item) }
        return try operation()
    }
}

@available(*, unavailable, message: "BlockingJobContext is only valid inside the job it was passed to")
extension BlockingJobContext: Sendable {}
