import SyncBridge

/// One statement handed from the task that awaits it to the connection's thread. Whichever side
/// ends it first wins, and the task is resumed exactly once:
///
/// - the connection's thread, with the result or the error;
/// - the task's cancellation, when the thread has not started the statement (it then skips it);
/// - a grace timer, when the server did not answer a cancel or a timeout in time: the task gets
///   its error and the connection is abandoned.
final class SQLCall<Result: Sendable>: Sendable {
    enum Phase: Equatable {
        /// Queued behind other work on the connection's thread.
        case queued
        /// The thread is running it.
        case running
        /// The task has been resumed.
        case done
    }

    private struct State {
        var phase = Phase.queued
        var continuation: UnsafeContinuation<Result, any Error>?
        var isCancelled = false
        /// Deadlines scheduled for the call, cancelled once it is done.
        var deadlines: [UInt64] = []
    }

    private let state = Locked(State())

    /// The task's continuation; the call resumes it once.
    ///
    /// - Returns: `false` when the task was cancelled before: the continuation has been resumed
    ///   with `CancellationError`, and the statement must not be submitted.
    func install(_ continuation: UnsafeContinuation<Result, any Error>) -> Bool {
        let cancelledEarly = state.withLock { state -> Bool in
            guard state.phase != .done else { return true }
            state.continuation = continuation
            return false
        }
        if cancelledEarly { continuation.resume(throwing: CancellationError()) }
        return !cancelledEarly
    }

    /// The thread starts the statement; `false` when the call already ended (cancelled while
    /// queued): the statement must not run.
    func begin() -> Bool {
        state.withLock { state in
            guard state.phase == .queued else { return false }
            state.phase = .running
            return true
        }
    }

    /// Whether the task was cancelled.
    var isCancelled: Bool { state.withLock { $0.isCancelled } }

    /// Where the call stands.
    var phase: Phase { state.withLock { $0.phase } }

    /// The task was cancelled. A queued call ends at once with `CancellationError`.
    ///
    /// - Returns: The phase it was in: `.running` means the statement must be interrupted.
    func cancel() -> Phase {
        endIfQueued(with: CancellationError(), cancelling: true)
    }

    /// The call's timeout passed. A queued call ends at once with `error` (its statement never
    /// runs).
    ///
    /// - Returns: The phase it was in: `.running` means the statement must be interrupted.
    func expire(with error: any Error) -> Phase {
        endIfQueued(with: error, cancelling: false)
    }

    /// Ends a queued call with `error` (noting that the task was cancelled when `cancelling`);
    /// returns the phase it was in.
    private func endIfQueued(with error: any Error, cancelling: Bool) -> Phase {
        let (phase, continuation, deadlines) = state.withLock {
            state -> (Phase, UnsafeContinuation<Result, any Error>?, [UInt64]) in
            if cancelling { state.isCancelled = true }
            let phase = state.phase
            guard phase == .queued else { return (phase, nil, []) }
            state.phase = .done
            defer {
                state.continuation = nil
                state.deadlines = []
            }
            return (phase, state.continuation, state.deadlines)
        }
        for deadline in deadlines { SQLDeadlines.shared.cancel(deadline) }
        continuation?.resume(throwing: error)
        return phase
    }

    /// Schedules `action` at `deadline`, cancelled when the call ends first.
    func schedule(at deadline: UInt64, _ action: @escaping @Sendable () -> Void) {
        let id = SQLDeadlines.shared.schedule(at: deadline, action)
        let keep = state.withLock { state -> Bool in
            guard state.phase != .done else { return false }
            state.deadlines.append(id)
            return true
        }
        if !keep { SQLDeadlines.shared.cancel(id) }
    }

    /// Ends the call with `result`; `false` when it had already ended (the result is dropped).
    @discardableResult
    func finish(_ result: Swift.Result<Result, any Error>) -> Bool {
        let ended = state.withLock { state -> (UnsafeContinuation<Result, any Error>?, [UInt64])? in
            guard state.phase != .done else { return nil }
            state.phase = .done
            defer {
                state.continuation = nil
                state.deadlines = []
            }
            return (state.continuation, state.deadlines)
        }
        guard let (continuation, deadlines) = ended else { return false }
        for deadline in deadlines { SQLDeadlines.shared.cancel(deadline) }
        continuation?.resume(with: result)
        return true
    }
}
