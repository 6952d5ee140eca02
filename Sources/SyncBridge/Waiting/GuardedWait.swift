/// Why ``waitForAsync(timeout:fileID:line:_:)`` (or another SyncBridge blocking API) refused to
/// block, or stopped blocking.
public struct GuardedWaitError: Error, Hashable, CustomStringConvertible {
    /// Why the wait was refused or ended.
    public struct Reason: Hashable, Sendable, CustomStringConvertible {
        enum Base: Hashable, Sendable {
            case cooperativeThread
            case eventLoopThread(String)
            case awaitedWorkNeedsBlockedThread(executor: String, kind: String)
            case timedOut(nanoseconds: Int64)
            case deadlock(DeadlockReport)
        }

        let base: Base

        /// The calling thread belongs to Swift's cooperative pool: blocking it stalls every task of
        /// its band, and deadlocks when the awaited work needs that band.
        public static let cooperativeThread = Reason(base: .cooperativeThread)

        /// The calling thread runs an event loop (see ``EventLoopThreads``): blocking it stalls
        /// every connection the loop serves.
        public static func eventLoopThread(_ name: String) -> Reason {
            Reason(base: .eventLoopThread(name))
        }

        /// Whether the calling thread runs an event loop.
        public var isEventLoopThread: Bool {
            if case .eventLoopThread = base { return true }
            return false
        }

        static func awaitedWorkNeedsBlockedThread(executor: String, kind: WorkerThreads.Kind) -> Reason {
            Reason(base: .awaitedWorkNeedsBlockedThread(executor: executor, kind: kind.rawValue))
        }

        static func deadlock(_ report: DeadlockReport) -> Reason {
            Reason(base: .deadlock(report))
        }

        static func timedOut(_ timeout: Duration) -> Reason {
            Reason(base: .timedOut(nanoseconds: timeout.nanosecondCount))
        }

        /// Whether the awaited work needed the very thread that was blocked waiting for it
        /// (a ``ThreadExecutor``'s thread, or every thread of a ``BlockingPool``).
        public var isAwaitedWorkNeedsBlockedThread: Bool {
            if case .awaitedWorkNeedsBlockedThread = base { return true }
            return false
        }

        /// Whether a ``DeadlockDetector`` in throw mode ended the wait, or a wait inside the
        /// awaited work: the work waits, directly or through others, for something that can
        /// never come (often something the waiting code holds). ``GuardedWaitError/report``
        /// has the detector's report.
        public var isDeadlock: Bool {
            if case .deadlock = base { return true }
            return false
        }

        /// Whether the wait's timeout passed.
        public var isTimedOut: Bool {
            if case .timedOut = base { return true }
            return false
        }

        /// Why, in words.
        public var description: String {
            switch base {
            case .cooperativeThread:
                "the calling thread belongs to Swift's cooperative pool; blocking it would stall or deadlock async work"
            case .eventLoopThread(let name):
                "the calling thread runs event loop \(name); blocking it would stall every connection the loop serves, and deadlock when the awaited work needs the loop"
            case .awaitedWorkNeedsBlockedThread(let executor, let kind):
                "the awaited work needs \(kind) '\(executor)', whose thread is the one that would wait for it"
            case .timedOut(let nanoseconds):
                "the awaited work did not finish within \(Double(nanoseconds) / 1e6) ms"
            case .deadlock(let report):
                "deadlock: \(report.headline)"
            }
        }
    }

    /// Why the wait was refused or ended.
    public let reason: Reason
    /// Where the wait was called.
    public let callSite: CallSite
    /// The thread that would have blocked.
    public let thread: ThreadIdentity

    /// The deadlock detector's report when it ended the wait (``Reason/isDeadlock``): the
    /// pattern, the whole chain with its call sites, and the fix.
    public var report: DeadlockReport? {
        if case .deadlock(let report) = reason.base { return report }
        return nil
    }

    /// The call site, the thread, the reason and what to do instead.
    public var description: String {
        let advice =
            switch reason.base {
            case .cooperativeThread:
                "Make the caller async and await the work, or call this synchronous code from a BlockingPool or ThreadExecutor thread."
            case .eventLoopThread:
                "Return a future instead (EventLoop.makeFutureWithTask), or run this synchronous code on a BlockingPool (BlockingPool.runIfActive(eventLoop:) in SyncBridgeNIO)."
            case .awaitedWorkNeedsBlockedThread:
                "Await the work instead of waiting for it, or run the waiting code on another executor."
            case .timedOut:
                "The awaited work was cancelled."
            case .deadlock:
                "The awaited work was cancelled; the detector's report shows the cycle."
            }
        return "waitForAsync at \(callSite) refused to block thread \(thread): \(reason). \(advice)"
    }
}

/// Blocks the calling thread until `operation`, run as a new task, finishes, and returns its
/// result: for legacy synchronous code that must call async code.
///
/// It refuses to block where blocking would deadlock or starve, and throws instead of hanging:
/// - on a thread of Swift's cooperative pool (inside a task, an actor on the default executor,
///   `DispatchQueue.global()`) — at once;
/// - on a ``ThreadExecutor``'s thread, as soon as the awaited work needs that thread (it calls an
///   actor that runs on it, or submits a closure to it) — the wait ends with
///   ``GuardedWaitError`` and the work is cancelled;
/// - on a ``BlockingPool`` thread, as soon as the awaited work needs the pool while every one of
///   its threads is blocked in such a wait.
///
/// ```swift
/// func legacyLookup(id: Int) throws -> Customer {     // synchronous, called by old code
///     try waitForAsync { try await customers.find(id: id) }
/// }
/// ```
///
/// - Parameters:
///   - timeout: Gives up (cancelling the work) after this long; `nil` waits as long as it takes.
///   - fileID: The call site, for errors; leave the default.
///   - line: The call site, for errors; leave the default.
///   - operation: The async work. It runs as a detached task on the global executor.
/// - Returns: What `operation` returns.
/// - Throws: ``GuardedWaitError`` when the wait is refused, would deadlock, or times out —
///   including when a ``DeadlockDetector`` in throw mode ends a wait inside `operation` (its
///   ``DeadlockError`` arrives as ``GuardedWaitError`` with ``GuardedWaitError/Reason/isDeadlock``
///   and the ``GuardedWaitError/report``), so one `catch` clause handles every refusal; otherwise
///   what `operation` throws.
@available(*, noasync, message: "waitForAsync blocks its thread; in async code, await the work directly")
public func waitForAsync<Success: Sendable>(
    timeout: Duration? = nil,
    fileID: StaticString = #fileID,
    line: UInt = #line,
    _ operation: sending @escaping () async throws -> Success
) throws -> Success {
    let callSite = CallSite(fileID: fileID, line: line)
    try refuseOnCooperativeThread("waitForAsync", at: callSite)
    let worker = WorkerThread.current
    let record = GuardedWaitRecord(callSite: callSite, blockedGroup: worker?.group)
    let result = GuardedWaitResult<Success>()
    worker?.group.beginGuardedWait(record)
    defer { worker?.group.endGuardedWait(record) }
    let tracked = WaitGraph.isActive
    let waitID: UInt64? =
        tracked
        ? WaitGraph.beginWait(
            for: .object(record.resourceID),
            of: record,
            by: Party.current,
            at: callSite,
            interrupt: { error in record.fail(reason: .deadlock(error.report)) }
        ) : nil
    defer { if let waitID { WaitGraph.endWait(waitID) } }
    let scope = record.scope
    // The waiting code keeps its locks until the awaited work is done: for lock order, the work
    // takes its locks while holding them.
    let waiterLocks = tracked ? HeldLock.heldByWaiter(HeldLock.current) : nil

    let task = Task.detached {
        record.awaitedTaskStarted(tracked: tracked)
        // The awaited work belongs to the caller's scope (a test's), for reports.
        await WatchdogScope.$current.withValue(scope) {
            await GuardedWaitRecord.$awaitedBy.withValue(record) {
                await HeldLock.$taskList.withValue(waiterLocks) {
                    do {
                        result.store(.success(try await operation()))
                    } catch {
                        result.store(.failure(error))
                    }
                }
            }
        }
        record.complete()
    }
    let deadline = timeout.map { monotonicNanoseconds() &+ UInt64(max(0, $0.nanosecondCount)) }
    switch record.block(untilMonotonicNanoseconds: deadline) {
    case .completed:
        do {
            return try result.take().get()
        } catch let error as DeadlockError {
            // A detector ended a wait inside the awaited work: for the waiting code, the same
            // refusal as when it ends this wait.
            throw GuardedWaitError(reason: .deadlock(error.report), callSite: callSite, thread: .current)
        }
    case .failed(let reason):
        task.cancel()
        throw GuardedWaitError(reason: reason, callSite: callSite, thread: .current)
    case .timedOut:
        task.cancel()
        throw GuardedWaitError(reason: .timedOut(timeout!), callSite: callSite, thread: .current)
    case .waiting:
        preconditionFailure("SyncBridge bug: a guarded wait returned while still waiting")
    }
}

/// Refuses a synchronous wait on a thread of Swift's cooperative pool or an event loop's: reports
/// it as a blocking call and to the deadlock detector, then throws ``GuardedWaitError`` (reason
/// ``GuardedWaitError/Reason/cooperativeThread`` or ``GuardedWaitError/Reason/eventLoopThread(_:)``).
/// Does nothing on any other thread.
func refuseOnCooperativeThread(_ operation: String, at callSite: CallSite) throws {
    guard let thread = GuardedThread.current else { return }
    Blocking.report(operation, callSite: callSite, on: thread)
    if WaitGraph.isActive {
        DeadlockDetector.report(
            BridgingReports.cooperativeThreadWait(operation, at: callSite, on: thread),
            refusing: true
        )
    }
    let reason: GuardedWaitError.Reason = thread.eventLoopName.map { .eventLoopThread($0) } ?? .cooperativeThread
    throw GuardedWaitError(reason: reason, callSite: callSite, thread: .current)
}

/// One guarded wait in progress: the blocked thread parks on it; the awaited task, or an executor
/// that detects the deadlock, ends it.
final class GuardedWaitRecord: @unchecked Sendable {
    // Safe to share: `outcome`, `awaitedTask` and `awaitedHolder` are read and written with
    // `condition` held.

    /// The guarded wait the current task's work is awaited by: set on the awaited task, read by
    /// executors when work is submitted to them.
    @TaskLocal static var awaitedBy: GuardedWaitRecord?

    enum Outcome {
        case waiting
        case completed
        case failed(GuardedWaitError.Reason)
        case timedOut
    }

    let callSite: CallSite
    let thread = ThreadIdentity.current
    /// The awaited task's completion, as the deadlock detector's graph names it.
    let resourceID = WaitGraph.newResourceID()
    /// The report scope (a test's) of the waiting code.
    let scope = WatchdogScope.current
    /// The SyncBridge threads one of which this wait blocks.
    let blockedGroup: WorkerThreads?
    private let condition = ConditionLock()
    private var outcome = Outcome.waiting
    private var awaitedTask: UnsafeRawPointer?
    private var awaitedHolder: WaitGraph.Holding?

    init(callSite: CallSite, blockedGroup: WorkerThreads?) {
        self.callSite = callSite
        self.blockedGroup = blockedGroup
    }

    /// Called first thing on the awaited task: records its identity, which is also the identity
    /// of the runtime job that resumes it on an executor.
    func awaitedTaskStarted(tracked: Bool) {
        let pointer = withUnsafeCurrentTask { task in
            task.map { unsafeBitCast($0, to: UnsafeRawPointer.self) }
        }
        // For the deadlock detector: the awaited task "holds" what the waiting code waits for.
        let holder = tracked ? WaitGraph.Holding(party: .current, callSite: callSite) : nil
        condition.withLock {
            awaitedTask = pointer
            awaitedHolder = holder
        }
    }

    func isAwaitedTask(_ job: UnsafeRawPointer) -> Bool {
        condition.withLock { awaitedTask == job }
    }

    func complete() {
        condition.withLock {
            if case .waiting = outcome { outcome = .completed }
        }
        condition.broadcast()
    }

    func fail(reason: GuardedWaitError.Reason) {
        condition.withLock {
            if case .waiting = outcome { outcome = .failed(reason) }
        }
        condition.broadcast()
    }

    /// Parks the calling thread until the outcome is known or `deadline` passes.
    func block(untilMonotonicNanoseconds deadline: UInt64?) -> Outcome {
        condition.lock()
        defer { condition.unlock() }
        while case .waiting = outcome {
            if let deadline {
                if !condition.wait(untilMonotonicNanoseconds: deadline), case .waiting = outcome {
                    outcome = .timedOut
                }
            } else {
                condition.wait()
            }
        }
        return outcome
    }
}

extension GuardedWaitRecord: WaitResource {
    /// What the waiting code waits for.
    var waitDescription: String { "the work it awaits in waitForAsync" }

    /// The awaited task, once it started.
    func waitHolders() -> [WaitGraph.Holding] {
        condition.withLock { awaitedHolder.map { [$0] } ?? [] }
    }

    /// Never released: it completes.
    var waitLastRelease: UInt64 { 0 }
}

/// Carries the awaited task's result to the blocked thread.
final class GuardedWaitResult<Success: Sendable>: @unchecked Sendable {
    // Safe to share: `store` happens on the awaited task before `GuardedWaitRecord.complete()`,
    // `take` on the waiting thread after `block` observed `.completed`; the record's lock orders
    // the two.
    private var value: Result<Success, any Error>?

    func store(_ value: Result<Success, any Error>) {
        self.value = value
    }

    func take() -> Result<Success, any Error> {
        value!
    }
}
