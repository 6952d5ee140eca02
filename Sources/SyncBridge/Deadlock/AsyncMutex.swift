import DequeModule

/// A mutex whose waiters suspend instead of blocking their thread: for state that must stay locked
/// across `await` (a legacy handle, a multi-step update). Waiters are served first come, first
/// served; a cancelled waiter leaves the queue with `CancellationError`.
///
/// When a ``DeadlockDetector`` runs, the mutex takes part in its wait-for graph and lock-order
/// checks: tasks that wait for each other's mutexes (directly or through pools and guarded waits)
/// are reported at once with the whole cycle, and in throw mode the wait that closed the cycle
/// throws ``DeadlockError``; a pair of mutexes (``AsyncMutex`` or ``CheckedMutex``) taken in both
/// orders is reported on the first inversion. Lock classes work as ``CheckedMutex``'s do.
///
/// ```swift
/// let ledger = AsyncMutex(Ledger(), lockClass: "ledger")
/// try await ledger.withLock { ledger in
///     ledger.balance += try await fetchAdjustment()
/// }
/// ```
public final class AsyncMutex<Value: Sendable>: @unchecked Sendable {
    // Safe to share: `value` is reached only by the task that holds the lock (inside
    // `withLock`), and the hand-over between holders goes through `state`'s mutex.
    private var value: Value
    private let state = Locked(LockState())
    /// The lock class's name.
    public let lockClass: String
    private let instance = WaitGraph.newResourceID()

    private struct LockState {
        var held = false
        var nextWaiter: UInt64 = 0
        var waiters: Deque<(id: UInt64, continuation: UnsafeContinuation<Void, any Error>)> = []
        var cancelledBeforeWaiting: Set<UInt64> = []
        /// The holder, while a deadlock detector runs.
        var holder: WaitGraph.Holding?
        /// When the holder last released it, while a detector runs.
        var lastRelease: UInt64 = 0
    }

    /// Creates a mutex guarding `value`.
    ///
    /// - Parameters:
    ///   - value: The guarded state.
    ///   - lockClass: The lock class's name; by default the creation site.
    ///   - fileID: The creation site; leave the default.
    ///   - line: The creation site; leave the default.
    public init(_ value: Value, lockClass: String? = nil, fileID: StaticString = #fileID, line: UInt = #line) {
        self.value = value
        self.lockClass = lockClass ?? "\(fileID):\(line)"
    }

    /// Suspends until the lock is free, then runs `body` with exclusive access to the value and
    /// releases the lock when it returns or throws.
    ///
    /// - Parameters:
    ///   - fileID: The acquisition site, for reports; leave the default.
    ///   - line: The acquisition site, for reports; leave the default.
    ///   - body: The critical section; it may suspend.
    /// - Returns: What `body` returns.
    /// - Throws: `CancellationError` when the task is cancelled while waiting; ``DeadlockError``
    ///   when a detector in throw mode finds that the wait can never end; what `body` throws.
    public func withLock<Result: Sendable>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: (inout Value) async throws -> Result
    ) async throws -> Result {
        let callSite = CallSite(fileID: fileID, line: line)
        guard WaitGraph.isActive else {
            try await lock(party: nil, callSite: callSite)
            defer { unlock(tracked: false) }
            return try await body(&value)
        }
        let party = Party.current
        if let report = LockOrder.acquiring(
            lockClass,
            kind: "AsyncMutex",
            at: callSite,
            holding: HeldLock.current,
            party: party
        ) {
            DeadlockDetector.report(report, refusing: false)
        }
        try await lock(party: party, callSite: callSite)
        state.withLock { $0.holder = WaitGraph.Holding(party: party, callSite: callSite) }
        defer { unlock(tracked: true) }
        let held = HeldLock(
            lockClass: lockClass,
            kind: "AsyncMutex",
            instance: instance,
            callSite: callSite,
            next: HeldLock.taskList
        )
        return try await HeldLock.$taskList.withValue(held) {
            try await body(&value)
        }
    }

    private func lock(party: Party?, callSite: CallSite) async throws {
        let id = state.withLock { state -> UInt64? in
            guard state.held else {
                state.held = true
                return nil
            }
            state.nextWaiter += 1
            return state.nextWaiter
        }
        guard let id else { return }
        let waitID = WaitSlot()
        defer { waitID.end() }
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                let enqueued = state.withLock { state -> Bool in
                    if state.cancelledBeforeWaiting.remove(id) != nil { return false }
                    guard state.held else {
                        state.held = true
                        continuation.resume()
                        return true
                    }
                    state.waiters.append((id, continuation))
                    return true
                }
                guard enqueued else {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                if let party {
                    waitID.id = WaitGraph.beginWait(
                        for: .object(instance),
                        of: self,
                        by: party,
                        at: callSite,
                        interrupt: { [weak self] error in self?.abandon(id, throwing: error) }
                    )
                }
            }
        } onCancel: {
            abandon(id, throwing: CancellationError())
        }
    }

    /// Takes waiter `id` out of the queue and resumes it with `error`; does nothing when it was
    /// already served.
    private func abandon(_ id: UInt64, throwing error: any Error) {
        let continuation = state.withLock { state -> UnsafeContinuation<Void, any Error>? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else {
                if error is CancellationError { state.cancelledBeforeWaiting.insert(id) }
                return nil
            }
            return state.waiters.remove(at: index).continuation
        }
        continuation?.resume(throwing: error)
    }

    private func unlock(tracked: Bool) {
        let next = state.withLock { state -> UnsafeContinuation<Void, any Error>? in
            if tracked {
                state.holder = nil
                state.lastRelease = monotonicNanoseconds()
            }
            guard let next = state.waiters.popFirst() else {
                state.held = false
                return nil
            }
            return next.continuation
        }
        next?.resume()
    }
}

extension AsyncMutex: WaitResource {
    /// `AsyncMutex "class"`.
    package var waitDescription: String { "AsyncMutex \"\(lockClass)\"" }

    /// The task that holds it.
    package func waitHolders() -> [WaitGraph.Holding] {
        state.withLock { $0.holder.map { [$0] } ?? [] }
    }

    /// When it was last released.
    package var waitLastRelease: UInt64 { state.withLock { $0.lastRelease } }
}

/// The wait-graph entry of one wait, written inside a continuation's closure and ended by the
/// waiting task after it resumes.
final class WaitSlot: @unchecked Sendable {
    // Safe to share: written before the continuation can be resumed (inside its closure, on the
    // waiting task) and read after the task resumed; the continuation orders the two.
    var id: UInt64?

    func end() {
        if let id { WaitGraph.endWait(id) }
    }
}
