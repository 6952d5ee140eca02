import DequeModule
import SyncBridge

/// One statement handed to a connection's I/O thread.
final class SQLIOStatement: Sendable {
    let query: SQLQuery
    let timeout: SQLTimeout?
    let call: SQLCall<SQLOutcome>

    init(query: SQLQuery, timeout: SQLTimeout?, call: SQLCall<SQLOutcome>) {
        self.query = query
        self.timeout = timeout
        self.call = call
    }
}

/// A connection's way to its I/O thread, as ``SQLConnection`` uses it whatever its session.
protocol SQLIORouting: AnyObject, Sendable {
    /// Queues a single statement; it runs after everything queued before it.
    func submit(_ statement: SQLIOStatement)
    /// Queues blocking work: `start` runs when everything queued before is done, and the work
    /// calls ``leave()`` when it no longer uses the session.
    func enter(_ start: @escaping @Sendable () -> Void)
    /// The blocking work that ``enter(_:)`` started is done with the session.
    func leave()
    /// Stops watching the socket (before the session closes it); statements queued later fail
    /// with `closedError`.
    func detach(closedError: any Error) async
}

/// Orders and runs the work of one connection served by an I/O thread.
///
/// The connection's work is one queue: single statements, which the I/O thread sends and reads
/// without blocking, and blocking work (everything else), which runs on the connection's own
/// thread. Only the head of the queue uses the session, so the I/O thread and the connection's
/// thread never touch it at the same time; the queue's lock orders the hand-overs.
final class SQLIOLane<Session: SQLNonBlockingSession>: SQLIORouting, @unchecked Sendable {
    // Safe to share: `session`, `token` and `needsRecovery` are used only by the I/O thread
    // while a statement is the head of `queue` (checked with `thread.isCurrent`), and `session`
    // by the connection's thread while blocking work is the head; `queue`'s lock orders the two.
    // The rest is immutable or `Sendable`.
    let thread: IOThread
    private let session: Session
    private let socket: Int32
    private let canceller: Session.Canceller
    private let queue = Locked(Queue())
    /// Runs a statement the blocking way, on the connection's thread (after a cancel, before the
    /// session is settled), then calls its second argument.
    private let runBlocking: @Sendable (SQLIOStatement, @escaping @Sendable () -> Void) -> Void
    /// Called when the session reports the connection broken.
    private let markUnusable: @Sendable () -> Void
    private var token: UInt64?
    /// A statement was cancelled: the next one settles the cancel and lets the session recover,
    /// the blocking way.
    private var needsRecovery = false
    /// The statement the I/O thread is running.
    private var current: SQLIOStatement?
    /// Set once the connection closes its session: what later statements fail with.
    private var closedError: (any Error)?

    private enum Work: Sendable {
        case statement(SQLIOStatement)
        case blocking(@Sendable () -> Void)
    }

    private struct Queue {
        var busy = false
        var waiting: Deque<Work> = []
    }

    init(
        thread: IOThread,
        session: Session,
        canceller: Session.Canceller,
        runBlocking: @escaping @Sendable (SQLIOStatement, @escaping @Sendable () -> Void) -> Void,
        markUnusable: @escaping @Sendable () -> Void
    ) {
        self.thread = thread
        self.session = session
        self.socket = session.ioSocket
        self.canceller = canceller
        self.runBlocking = runBlocking
        self.markUnusable = markUnusable
    }

    func submit(_ statement: SQLIOStatement) {
        guard admit(.statement(statement)) else { return }
        thread.execute { [self] in run(from: .statement(statement)) }
    }

    func enter(_ start: @escaping @Sendable () -> Void) {
        guard admit(.blocking(start)) else { return }
        start()
    }

    func leave() {
        guard let next = nextWork() else { return }
        dispatch(next)
    }

    func detach(closedError: any Error) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            thread.execute { [self] in
                if let token { thread.remove(socket, token: token) }
                token = nil
                self.closedError = closedError
                continuation.resume()
            }
        }
    }

    /// Queues `work`; `true` when nothing is ahead of it and the caller must start it.
    private func admit(_ work: Work) -> Bool {
        queue.withLock { queue in
            guard queue.busy else {
                queue.busy = true
                return true
            }
            queue.waiting.append(work)
            return false
        }
    }

    /// The head's work is done: the next work to start, if any.
    private func nextWork() -> Work? {
        queue.withLock { queue in
            guard let next = queue.waiting.popFirst() else {
                queue.busy = false
                return nil
            }
            return next
        }
    }

    private func dispatch(_ work: Work) {
        switch work {
        case .statement:
            thread.execute { [self] in run(from: work) }
        case .blocking(let start):
            start()
        }
    }

    // MARK: On the I/O thread

    /// Runs `work` and what follows it, as long as each ends at once (a statement cancelled
    /// while queued); returns when one waits for its socket or blocking work was handed on.
    private func run(from work: Work) {
        var work: Work? = work
        while let head = work {
            switch head {
            case .blocking(let start):
                start()
                return
            case .statement(let statement):
                if start(statement) { return }
            }
            work = nextWork()
        }
    }

    /// Starts `statement`; `true` when it is in flight (its socket armed) or was handed to the
    /// connection's thread.
    private func start(_ statement: SQLIOStatement) -> Bool {
        precondition(thread.isCurrent)
        guard statement.call.begin() else { return false }
        if let closedError {
            statement.call.finish(.failure(closedError))
            return false
        }
        if needsRecovery || canceller.hasPendingCancels {
            needsRecovery = false
            runBlocking(statement) { [self] in leave() }
            return true
        }
        current = statement
        return advance { try session.startStatement(statement.query) }
    }

    /// Moves the current statement on with `step`; `true` while it waits for its socket.
    private func advance(_ step: () throws -> SQLStatementProgress) -> Bool {
        guard let statement = current else { return false }
        let result: Result<SQLOutcome, any Error>
        do {
            switch try step() {
            case .waiting(let interest):
                arm(for: interest)
                return true
            case .done(let outcome):
                result = .success(outcome)
            }
        } catch
            where Session.isCancellation(error)
            && (statement.call.isCancelled || statement.timeout?.hasPassed == true)
        {
            needsRecovery = true
            if statement.call.isCancelled || statement.timeout == nil {
                result = .failure(CancellationError())
            } else {
                result = .failure(Session.timeoutError(statement.timeout!, query: statement.query))
            }
        } catch {
            result = .failure(error)
        }
        current = nil
        if !session.isHealthy { markUnusable() }
        statement.call.finish(result)
        return false
    }

    private func arm(for interest: SQLSocketInterest) {
        let token =
            self.token
            ?? thread.add(socket) { [self] _ in
                // Until `detach()`, which the connection calls before it closes.
                socketReady()
            }
        self.token = token
        thread.arm(socket, token: token, for: IOReadiness(rawValue: interest.rawValue))
    }

    private func socketReady() {
        guard current != nil else { return }
        if advance({ try session.continueStatement() }) { return }
        guard let next = nextWork() else { return }
        run(from: next)
    }
}

/// Makes the I/O lane of a connection whose session can run statements without blocking.
func makeIOLane<Session: SQLSession>(
    for session: Session,
    canceller: Session.Canceller,
    on threads: SQLIOThreads,
    runBlocking: @escaping @Sendable (SQLIOStatement, @escaping @Sendable () -> Void) -> Void,
    markUnusable: @escaping @Sendable () -> Void
) -> (any SQLIORouting)? {
    guard let session = session as? any SQLNonBlockingSession else { return nil }
    func lane<NonBlocking: SQLNonBlockingSession>(_ session: NonBlocking) -> any SQLIORouting {
        // The session's canceller is the one made for it: same type.
        SQLIOLane<NonBlocking>(
            thread: threads.nextThread(),
            session: session,
            canceller: canceller as! NonBlocking.Canceller,
            runBlocking: runBlocking,
            markUnusable: markUnusable
        )
    }
    return lane(session)
}
