import DequeModule
import SyncBridge

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One statement handed to a connection's I/O thread.
final class SQLIOStatement: Sendable {
    let query: SQLQuery
    let timeout: SQLTimeout?
    let call: SQLCall<SQLOutcome>
    /// The caller's task: the I/O thread records the statement's wait in the connection's queue
    /// as a span of the caller's trace when it sends it; the connection's thread acts for the
    /// task when the statement is handed there.
    let origin: JobOrigin
    /// When the caller submitted it (monotonic nanoseconds), for snapshots.
    let submittedAt = monotonicNanoseconds()
    /// Where the caller issued it, for snapshots.
    let callSite: CallSite?
    /// The connection's transaction start, which the statement sends with it when it waits.
    let transactionStart: SQLDeferredTransactionStart?

    init(
        query: SQLQuery,
        timeout: SQLTimeout?,
        call: SQLCall<SQLOutcome>,
        callSite: CallSite?,
        transactionStart: SQLDeferredTransactionStart? = nil
    ) {
        self.query = query
        self.callSite = callSite
        self.timeout = timeout
        self.call = call
        self.origin = JobOrigin.current()
        self.transactionStart = transactionStart
    }
}

/// A connection's way to its I/O thread, as ``SQLConnection`` uses it whatever its session.
protocol SQLIORouting: AnyObject, Sendable {
    /// The I/O thread that serves the connection.
    var thread: IOThread { get }
    /// Whether a transaction's start can travel with its first statement
    /// (``SQLTransactionStartPipelining``).
    var pipelinesTransactionStart: Bool { get }
    /// Queues a single statement; it runs after everything queued before it.
    func submit(_ statement: SQLIOStatement)
    /// The task of a statement that was sent was cancelled, or its timeout passed (`error` says
    /// which). When it is the only statement in flight, `cancelOnServer` runs on the I/O thread
    /// (it asks the server to stop it, which then answers with its cancellation error), as it
    /// does for a statement the connection's thread runs the blocking way; when
    /// others are in flight with it, a cancel could reach one of theirs, so its caller gets
    /// `error` at once instead, and the statement's own result is dropped when it comes.
    func interrupt(_ statement: SQLIOStatement, with error: any Error, cancelOnServer: @escaping () -> Void)
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
///
/// Statements at the head are pipelined: while some are in flight, the statements queued behind
/// them (up to the session's ``SQLNonBlockingSession/pipelineCapacity``) are sent too, each with
/// a sync point of its own, and their results go back to their callers in order. Blocking work
/// waits until every statement in flight has ended.
final class SQLIOLane<Session: SQLNonBlockingSession>: SQLIORouting, @unchecked Sendable {
    // Safe to share: the `var`s are used only on the I/O thread (every method that touches them
    // runs there: `precondition(thread.isCurrent)` where it is not obvious), and `session` by the
    // I/O thread while statements are the head of `queue`, by the connection's thread while
    // blocking work is; `queue`'s lock orders the hand-overs. The rest is immutable or
    // `Sendable`.
    let thread: IOThread
    private let session: Session
    /// The lane's own descriptor of the session's socket (a duplicate), which the I/O thread
    /// watches. The C client closes its descriptor whenever it drops the connection (Connector/C
    /// and libpq do on a read error): watched through that number, the socket's registration
    /// would belong to whichever connection the number went to next, and `epoll_ctl` calls for
    /// this lane would re-arm or remove theirs — a lost wake-up for a healthy connection. This
    /// number stays the lane's until ``detach(closedError:)``.
    private let socket: Int32
    /// `socket` is closed (after ``detach(closedError:)``).
    private var socketClosed = false
    private let canceller: Session.Canceller
    /// The session, when it can send a transaction's start with a statement.
    private let startPipelining: (any SQLTransactionStartPipelining)?
    private let queue = Locked(Queue())
    /// Runs a statement the blocking way, on the connection's thread (after a cancel, before the
    /// session is settled), then calls its second argument.
    private let runBlocking: @Sendable (SQLIOStatement, @escaping @Sendable () -> Void) -> Void
    /// Called when the session reports the connection broken.
    private let markUnusable: @Sendable () -> Void
    private var token: UInt64?
    /// A statement was cancelled on the server: the next one settles the cancel and lets the
    /// session recover, the blocking way.
    private var needsRecovery = false
    /// The statements sent and not yet answered, oldest first.
    private var inFlight: Deque<SQLIOStatement> = []
    /// The socket is armed for the session's statements (or its own commands) in flight.
    private var armed = false
    /// The socket is armed while the connection is idle, for what the server may send unasked
    /// (``idleReport()``).
    private var watchingIdle = false
    /// A cancel was sent for the statement in flight: nothing is sent behind it until it ends.
    private var cancelling = false
    /// A statement in flight carries its transaction's start: nothing is sent behind it until it
    /// ends, since a statement behind it, with a sync point of its own, would run outside the
    /// transaction if the start failed.
    private var startCarrier: SQLIOStatement?
    /// Set once the connection closes its session: what later statements fail with.
    private var closedError: (any Error)?

    // Not nested in the generic lane: the types of a generic context are looked up at run time
    // (a hash of the generic arguments) wherever they are used, several times per statement.
    private typealias Work = SQLIOLaneWork
    private typealias Queue = SQLIOLaneQueue

    /// A lane for `session`; `nil` when its socket cannot be duplicated (the process is out of
    /// descriptors): the connection then keeps to its own thread.
    init?(
        thread: IOThread,
        session: Session,
        canceller: Session.Canceller,
        runBlocking: @escaping @Sendable (SQLIOStatement, @escaping @Sendable () -> Void) -> Void,
        markUnusable: @escaping @Sendable () -> Void
    ) {
        let socket = fcntl(session.ioSocket, F_DUPFD_CLOEXEC, 0)
        guard socket >= 0 else { return nil }
        self.thread = thread
        self.session = session
        self.socket = socket
        self.canceller = canceller
        self.runBlocking = runBlocking
        self.markUnusable = markUnusable
        self.startPipelining = session as? any SQLTransactionStartPipelining
    }

    var pipelinesTransactionStart: Bool { startPipelining != nil }

    deinit {
        // A lane dropped without `detach`: nothing watches `socket` any more.
        if !socketClosed { close(socket) }
    }

    func submit(_ statement: SQLIOStatement) {
        let (startNow, fillNow) = queue.withLock { queue -> (Bool, Bool) in
            guard queue.busy else {
                queue.busy = true
                return (true, false)
            }
            queue.waiting.append(.statement(statement))
            // Statements may be in flight: send this one behind them now rather than when their
            // answers come. One such turn at a time takes every statement queued by then.
            guard !queue.fillScheduled else { return (false, false) }
            queue.fillScheduled = true
            return (false, true)
        }
        if startNow {
            thread.execute { [self] in run(from: .statement(statement)) }
        } else if fillNow {
            thread.execute { [self] in sendQueued() }
        }
    }

    func interrupt(_ statement: SQLIOStatement, with error: any Error, cancelOnServer: @escaping () -> Void) {
        // `cancelOnServer` runs on the I/O thread, the only one that calls it.
        nonisolated(unsafe) let cancelOnServer = cancelOnServer
        thread.execute { [self] in
            guard inFlight.contains(where: { $0 === statement }) else {
                // Not in flight but running: the connection's thread runs it alone, the blocking
                // way.
                if statement.call.phase == .running { cancelOnServer() }
                return
            }
            if inFlight.count == 1 {
                cancelling = true
                cancelOnServer()
            } else {
                statement.call.finish(.failure(error))
            }
        }
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
                if let token { thread.remove(token) }
                token = nil
                if !socketClosed {
                    close(socket)
                    socketClosed = true
                }
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

    /// The statement at the front of the queue, taken to be sent behind those in flight.
    private func nextQueuedStatement() -> SQLIOStatement? {
        queue.withLock { queue in
            guard case .statement(let statement)? = queue.waiting.first else { return nil }
            queue.waiting.removeFirst()
            return statement
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

    /// Runs `work` and what follows it, as long as each ends at once (statements cancelled while
    /// queued); returns when statements are in flight or blocking work was handed on.
    private func run(from work: Work) {
        precondition(thread.isCurrent)
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

    /// Starts `statement` and the statements queued behind it; `true` when some are in flight
    /// (the socket armed) or the statement was handed to the connection's thread.
    private func start(_ statement: SQLIOStatement) -> Bool {
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
        send(statement)
        fill()
        return poll(afterSending: true)
    }

    /// Sends more of the queued statements while the pipeline has room.
    private func fill() {
        while inFlight.count < session.pipelineCapacity, !cancelling, startCarrier == nil, !needsRecovery,
            !canceller.hasPendingCancels,
            closedError == nil, session.isHealthy, let statement = nextQueuedStatement()
        {
            guard statement.call.begin() else { continue }
            send(statement)
        }
    }

    private func send(_ statement: SQLIOStatement) {
        statement.origin.trace?.recordWait(on: thread.name, kind: "IOThread")
        let start: [String]
        do {
            start = try statement.transactionStart?.take() ?? []
        } catch {
            complete(statement, with: .failure(error))
            return
        }
        do {
            if start.isEmpty {
                try session.sendStatement(statement.query, timeout: statement.timeout)
            } else if let startPipelining {
                try startPipelining.sendStatement(
                    statement.query,
                    timeout: statement.timeout,
                    startingTransaction: start
                )
                startCarrier = statement
            } else {
                preconditionFailure("SyncBridge bug: a transaction's start deferred on a lane that cannot send it")
            }
            inFlight.append(statement)
            thread.noteSent(
                ObjectIdentifier(statement),
                detail: statement.query,
                callSite: statement.callSite,
                submittedAt: statement.submittedAt
            )
        } catch {
            // Nothing was sent when the session is still healthy (the statement could not be
            // encoded): the start waits for the next statement.
            if !start.isEmpty && session.isHealthy { statement.transactionStart?.hold(start) }
            complete(statement, with: .failure(error))
            if !session.isHealthy { failInFlight(error) }
        }
    }

    /// Reads what arrived and hands each ended statement its result; `true` while statements are
    /// still in flight (the socket is armed again). `afterSending` right after a burst of sends:
    /// the session then only pushes the burst (``SQLNonBlockingSession/flushStatements()``).
    private func poll(afterSending: Bool = false) -> Bool {
        var afterSending = afterSending
        while true {
            let poll: SQLStatementPoll
            do {
                poll = try afterSending ? session.flushStatements() : session.pollStatements()
            } catch {
                failInFlight(error)
                return false
            }
            for result in poll.results {
                guard let statement = inFlight.popFirst() else { break }
                thread.noteAnswered(ObjectIdentifier(statement))
                if cancelling && inFlight.isEmpty { cancelling = false }
                complete(statement, with: result)
            }
            let before = inFlight.count
            afterSending = false
            if let interest = poll.waitFor {
                fill()
                if inFlight.count > before {
                    afterSending = true
                    continue
                }
                arm(for: interest, timeout: poll.timeout)
                return true
            }
            // The session has nothing in flight.
            if !inFlight.isEmpty {
                failInFlight(SQLIOLaneError.unanswered)
                return false
            }
            fill()
            if inFlight.isEmpty { return false }
        }
    }

    /// Ends `statement`: the server's cancellation error becomes `CancellationError` or the
    /// timeout when the task asked for it; a broken connection is noted before the caller
    /// resumes.
    private func complete(_ statement: SQLIOStatement, with result: Result<SQLOutcome, any Error>) {
        var result = result
        if statement === startCarrier { startCarrier = nil }
        if case .failure(let failure as SQLTransactionNotStarted) = result {
            // The transaction did not start: its later statements are not sent.
            statement.transactionStart?.fail(failure)
            if Session.isCancellation(failure.underlying) { result = .failure(failure.underlying) }
        }
        if case .failure(let error) = result, Session.isCancellation(error),
            statement.call.isCancelled || statement.timeout?.hasPassed == true
        {
            needsRecovery = true
            if statement.call.isCancelled || statement.timeout == nil {
                result = .failure(CancellationError())
            } else {
                result = .failure(Session.timeoutError(statement.timeout!, query: statement.query))
            }
        }
        if !session.isHealthy { markUnusable() }
        statement.call.finish(result)
    }

    /// The connection failed: every statement in flight fails with `error`.
    private func failInFlight(_ error: any Error) {
        markUnusable()
        cancelling = false
        startCarrier = nil
        while let statement = inFlight.popFirst() {
            thread.noteAnswered(ObjectIdentifier(statement))
            statement.call.finish(.failure(error))
        }
    }

    private func arm(for interest: SQLSocketInterest, timeout: Duration?) {
        armed = true
        watchingIdle = false
        // Until `detach()`, which the connection calls before it closes.
        let token =
            self.token
            ?? thread.add(socket, handler: { [self] _ in socketReady() }, unarmed: { [self] _ in idleReport() })
        self.token = token
        thread.arm(
            token,
            for: IOReadiness(rawValue: interest.rawValue),
            deadline: timeout.map { monotonicNanoseconds() &+ UInt64(max(0, $0.nanosecondCount)) }
        )
    }

    /// The socket was reported while no statement of the lane had armed it: the server sent
    /// something unasked, or closed the connection, or blocking work that has the session uses
    /// its socket. When nothing has the session, the session reads what came; a connection
    /// found over is marked broken and unusable at once (its pool then closes it instead of
    /// leasing it again), a usable one is watched on until its next statement. Reports during
    /// blocking work are that work's: the session is left alone, and the socket is watched again
    /// from the next statement on.
    private func idleReport() {
        guard !armed, inFlight.isEmpty, closedError == nil, let token else { return }
        let idle = queue.withLock { queue in
            guard !queue.busy else { return false }
            queue.busy = true
            return true
        }
        guard idle else { return }
        switch session.checkWhileIdle() {
        case .usable:
            watchingIdle = true
            thread.arm(token, for: .readable)
        case .over:
            session.markBroken()
            markUnusable()
        case .inUse:
            break
        }
        guard let next = nextWork() else { return }
        run(from: next)
    }

    /// Sends the statements queued behind those in flight, if any are in flight.
    private func sendQueued() {
        queue.withLock { $0.fillScheduled = false }
        guard armed, !inFlight.isEmpty else { return }
        let before = inFlight.count
        fill()
        guard inFlight.count > before else { return }
        armed = false
        if poll(afterSending: true) { return }
        guard let next = nextWork() else { return }
        run(from: next)
    }

    private func socketReady() {
        guard armed else {
            if watchingIdle {
                watchingIdle = false
                idleReport()
            }
            return
        }
        armed = false
        if poll() { return }
        guard let next = nextWork() else { return }
        run(from: next)
    }
}

/// One piece of a lane's work: a statement the I/O thread sends, or blocking work that runs on
/// the connection's thread.
private enum SQLIOLaneWork: Sendable {
    case statement(SQLIOStatement)
    case blocking(@Sendable () -> Void)
}

/// A lane's queue of work, under its lock.
private struct SQLIOLaneQueue {
    /// The head of the queue has the session.
    var busy = false
    var waiting: Deque<SQLIOLaneWork> = []
    /// A turn of the lane's `sendQueued()` is on its way to the I/O thread.
    var fillScheduled = false
}

/// A pooled connection that an I/O thread serves: the pool leases it first to tasks that run on
/// that thread.
package protocol IOThreadAffine: AnyObject {
    /// The serving thread's ``IOThread/affinity``, or 0 when no I/O thread serves it.
    var ioThreadAffinity: UInt { get }
}

/// What a lane reports when its session loses track of its statements.
enum SQLIOLaneError: Error, CustomStringConvertible {
    /// The session has no statement in flight, but the lane still waits for some.
    case unanswered

    var description: String {
        "the session reported no statement in flight while the I/O thread still waited for answers"
    }
}

/// Makes the I/O lane of a connection whose session can run statements without blocking; `nil`
/// for ``SQLIOThreads/off`` or a session that cannot.
func makeIOLane<Session: SQLSession>(
    for session: Session,
    canceller: Session.Canceller,
    on threads: SQLIOThreads,
    runBlocking: @escaping @Sendable (SQLIOStatement, @escaping @Sendable () -> Void) -> Void,
    markUnusable: @escaping @Sendable () -> Void
) -> (any SQLIORouting)? {
    guard threads.areOn, let session = session as? any SQLNonBlockingSession else { return nil }
    func lane<NonBlocking: SQLNonBlockingSession>(_ session: NonBlocking) -> (any SQLIORouting)? {
        guard session.usesIOThreads else { return nil }
        // The session's canceller is the one made for it: same type.
        return SQLIOLane<NonBlocking>(
            thread: threads.nextThread(),
            session: session,
            canceller: canceller as! NonBlocking.Canceller,
            runBlocking: runBlocking,
            markUnusable: markUnusable
        )
    }
    return lane(session)
}
