/// What a job keeps of the task it acts for: the task itself (the deadlock detector sees the
/// thread that runs the job act for it), the task's report scope (a test's) and its tracing
/// context.
///
/// Captured in the task when it asks for the work. That may be well before the work is queued
/// on a thread, and on another thread: a connection served by an I/O thread queues blocking
/// work behind the statements in flight, and the I/O thread submits it when they are done,
/// where no task is current.
package struct JobOrigin: Sendable {
    /// The task's address while a deadlock detector runs, 0 otherwise.
    let submitter: UInt
    /// The task's report scope, while a scoped (a test's) detector runs.
    let scope: UInt64?
    /// The task's tracing context, with the time it asked for the work.
    package let trace: JobTrace?

    /// The current task's origin.
    package static func current() -> JobOrigin {
        let trace = JobTrace.capture()
        guard WaitGraph.isActive else { return JobOrigin(submitter: 0, scope: nil, trace: trace) }
        return JobOrigin(
            submitter: withUnsafeCurrentTask { $0.map { unsafeBitCast($0, to: UInt.self) } } ?? 0,
            // Scopes exist only where a scoped detector (a test's) runs.
            scope: WaitGraph.hasScopedDetectors ? WatchdogScope.current : nil,
            trace: trace
        )
    }
}

extension WorkItem {
    /// Makes the item act for `origin`'s task when it runs. Before the item is published to the
    /// queue.
    func attribute(to origin: JobOrigin) {
        submitter = origin.submitter
        scope = origin.scope
        trace = origin.trace
    }
}
