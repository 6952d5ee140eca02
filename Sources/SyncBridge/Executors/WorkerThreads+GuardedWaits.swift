import CSyncBridgeShims
import Synchronization

// The deadlock detector's side of the worker threads: guarded waits that block them, waits that
// can never end because the work they await needs these very threads, and the submitting task
// that a closure acts for.
extension WorkerThreads {
    /// Ends `record`, a guarded wait on one of these threads that can never end because the work
    /// it awaits needs these threads, all of which are `blocked`; reports it to the detector.
    func refuse(_ record: GuardedWaitRecord, blocked: [(thread: ThreadIdentity, callSite: CallSite)]) {
        if WaitGraph.isActive {
            let report =
                kind == .threadExecutor
                ? BridgingReports.selfWait(
                    "waitForAsync",
                    executor: name,
                    kind: kind,
                    at: record.callSite,
                    thread: record.thread,
                    scope: record.scope
                )
                : BridgingReports.poolStarvation(pool: name, waits: blocked, scope: record.scope)
            DeadlockDetector.report(report, refusing: true)
        }
        record.fail(reason: .awaitedWorkNeedsBlockedThread(executor: name, kind: kind))
    }

    /// A guarded wait starts blocking one of these threads.
    func beginGuardedWait(_ record: GuardedWaitRecord) {
        lock.lock()
        blockedWaits.append(record)
        blockedWaitCount.store(blockedWaits.count, ordering: .relaxed)
        lock.unlock()
    }

    func endGuardedWait(_ record: GuardedWaitRecord) {
        lock.lock()
        blockedWaits.removeAll { $0 === record }
        blockedWaitCount.store(blockedWaits.count, ordering: .relaxed)
        lock.unlock()
    }

    /// With the lock held: the wait that can never end because `job`, the task it awaits, has
    /// just been queued here while every thread that could run it is blocked in a guarded wait.
    func deadlockedWait(forJob job: UnownedJob) -> GuardedWaitRecord? {
        guard blockedWaits.count == threadCount else { return nil }
        let pointer = unsafeBitCast(job, to: UnsafeRawPointer.self)
        return blockedWaits.first { $0.isAwaitedTask(pointer) }
    }

    /// With the lock held: `record` if it blocks one of these threads and no thread is left to run
    /// the work that it awaits and that was just submitted.
    func deadlockedWait(neededBy record: GuardedWaitRecord) -> GuardedWaitRecord? {
        guard blockedWaits.count == threadCount, blockedWaits.contains(where: { $0 === record }) else {
            return nil
        }
        return record
    }

    /// With the lock held: the threads blocked in guarded waits, for the report; then
    /// `record` no longer counts as blocking its thread, which its refusal is about to free. So
    /// when the works of several waits arrive at once, only the first is refused, and its thread
    /// then runs the others' queued work.
    func claimForRefusal(_ record: GuardedWaitRecord) -> [(thread: ThreadIdentity, callSite: CallSite)] {
        let blocked = blockedWaits.map { (thread: $0.thread, callSite: $0.callSite) }
        blockedWaits.removeAll { $0 === record }
        blockedWaitCount.store(blockedWaits.count, ordering: .relaxed)
        return blocked
    }
}
