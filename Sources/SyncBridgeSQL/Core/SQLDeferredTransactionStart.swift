import SyncBridge
import Synchronization

/// A connection's transaction start that waits for the transaction's first statement, to reach
/// the server with it (``SQLTransactionStartPipelining``), and what became of it.
///
/// Whatever reaches the connection's session first sends the start: a statement on the I/O
/// thread sends it in the same unit; any other work (a stream, COPY, `withRawConnection`, a
/// statement run the blocking way) runs it first, alone. An operation that ends before it
/// reaches the session (cancelled or timed out while queued) leaves the start for the next.
final class SQLDeferredTransactionStart: Sendable {
    private enum State {
        /// No transaction waits for its start.
        case none
        /// The start waits for the transaction's first statement.
        case pending([String])
        /// The start was sent and failed: no transaction is open on the server.
        case failed(SQLTransactionNotStarted)
    }

    private let state = Locked(State.none)
    /// Whether `state` may be other than `.none`: every statement asks ``take()``, and outside a
    /// transaction one atomic load answers instead of the lock. Set before a transaction's body
    /// runs (by its own task, which then issues the body's statements), cleared when it ends.
    private let engaged = Atomic(false)

    /// The start waits for the transaction's first statement (also: a start that ``take()`` gave
    /// out was not sent after all, because its statement could not be encoded).
    func hold(_ start: [String]) {
        state.withLock { $0 = .pending(start) }
        engaged.store(true, ordering: .releasing)
    }

    /// For work about to reach the session: the start to send before it (empty when none waits).
    ///
    /// - Throws: ``SQLTransactionNotStarted`` when the start failed: the work must not run.
    func take() throws -> [String] {
        guard engaged.load(ordering: .acquiring) else { return [] }
        return try state.withLock { state in
            switch state {
            case .none: return []
            case .pending(let start):
                state = .none
                return start
            case .failed(let failure): throw failure
            }
        }
    }

    /// The start was sent and failed.
    func fail(_ failure: SQLTransactionNotStarted) {
        state.withLock { $0 = .failed(failure) }
    }

    /// Whether nothing of the transaction reached the server, or it never started there:
    /// nothing to roll back.
    var isNotOpenOnServer: Bool {
        state.withLock { state in
            if case .none = state { return false }
            return true
        }
    }

    /// The transaction ended: nothing waits any more.
    func end() {
        state.withLock { $0 = .none }
        engaged.store(false, ordering: .releasing)
    }

    /// Runs the start that waits, if any, on the session's own thread, the blocking way.
    ///
    /// - Throws: ``SQLTransactionNotStarted`` when the start failed, or failed before; the
    ///   server's cancellation error as it is, for the caller to settle.
    func runPending<Session: SQLSession>(on session: Session) throws {
        let start = try take()
        guard !start.isEmpty else { return }
        do {
            for statement in start { try session.runControl(statement) }
        } catch {
            let failure = SQLTransactionNotStarted(underlying: error)
            fail(failure)
            if Session.isCancellation(error) { throw error }
            throw failure
        }
    }
}
