public import Logging
public import Metrics
public import SyncBridge
package import Tracing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One database connection: the async face of an ``SQLSession``.
///
/// Every C call on the connection runs on a thread of SyncBridge's, never on Swift's cooperative
/// pool; callers suspend meanwhile. Single statements are sent and read without blocking by one
/// of the connection's ``SQLIOThreads`` (when it has some; pipelined when they queue), everything else
/// (streams, transactions' control statements, `withRawConnection`) on the connection's own
/// `ThreadExecutor`, in submission order; that thread exits while it has nothing to do and starts
/// again with the next such call (``SQLIOThreads/connectionThreadIdleLifetime``). With
/// ``SQLIOThreads/off``, or a session that cannot run without blocking, every call runs on the
/// connection's own thread, one at a time, and the thread stays.
/// Cancelling the task of a running statement cancels it **on the server** (through the session's
/// ``SQLSession/Canceller``) and the connection stays usable.
///
/// `PostgresConnection` and `MariaDBConnection` are this class over SyncBridge's two sessions:
///
/// ```swift
/// let connection = try await PostgresConnection.connect("postgres://app@db.internal/app")
/// let rows = try await connection.query("SELECT id, name FROM users WHERE team = \(team)")
/// for row in rows {
///     let (id, name) = try row.decode((Int, String).self)
/// }
/// await connection.close()
/// ```
///
/// A connection serves one task at a time; for concurrent work, use an ``SQLClient``, whose pool
/// leases connections.
public final class SQLConnection<Session: SQLSession>: PooledConnection, SQLDatabase, CustomStringConvertible {
    /// How concurrent transactions see each other's changes.
    public typealias IsolationLevel = SQLIsolationLevel

    /// The connection's own thread, which runs its blocking work in order (on I/O threads, it
    /// exits while idle and starts again with the next job).
    public let executor: ThreadExecutor
    /// Receives the connection's logs.
    public let logger: Logger
    /// Where the connection goes, without the password.
    public let description: String
    /// The connection's configuration.
    public let configuration: Session.Configuration
    package let session: ThreadBound<Session>
    package let canceller: Session.Canceller
    /// How long a cancelled or timed-out statement waits for the server before the connection is
    /// abandoned.
    public let cancellationGracePeriod: Duration
    private let abandoner: SocketAbandoner
    private let transactions = SQLTransactionNesting()
    /// The outermost transaction's start while it waits for the transaction's first statement.
    private let transactionStart = SQLDeferredTransactionStart()
    package let metrics: SQLStatementMetrics
    /// Where the session is connected, for spans.
    package let tracingTarget: SQLTracingTarget
    /// Cleared once the session reports the connection broken; a pool then discards it.
    private let usable: Locked<Bool>
    /// The timeout of statements run without one, when the client keeps the configuration's
    /// default (``SQLSession/clientStatementTimeout(_:)``).
    package let defaultTimeout: Duration?
    /// Whether the connection cancels a statement whose timeout passed
    /// (``SQLSession/cancelsAtTimeout(_:)``).
    private let cancelsAtTimeout: Bool
    /// The connection's I/O thread, which runs its single statements without blocking, when it
    /// was made with ``SQLIOThreads`` and its session can (``SQLNonBlockingSession``). Then every
    /// other use of the session queues behind it, in order.
    private let ioLane: (any SQLIORouting)?

    private static var connectionNumbers: Locked<Int> { sqlConnectionNumbers }

    private init(
        executor: ThreadExecutor,
        session: ThreadBound<Session>,
        canceller: Session.Canceller,
        abandoner: SocketAbandoner,
        cancellationGracePeriod: Duration,
        configuration: Session.Configuration,
        logger: Logger,
        metrics: SQLStatementMetrics,
        tracingTarget: SQLTracingTarget,
        usable: Locked<Bool>,
        ioLane: (any SQLIORouting)?
    ) {
        self.usable = usable
        self.ioLane = ioLane
        self.tracingTarget = tracingTarget
        self.executor = executor
        self.session = session
        self.canceller = canceller
        self.abandoner = abandoner
        self.cancellationGracePeriod = cancellationGracePeriod
        self.configuration = configuration
        self.description = configuration.description
        self.logger = logger
        self.metrics = metrics
        self.defaultTimeout = Session.clientStatementTimeout(configuration)
        self.cancelsAtTimeout = Session.cancelsAtTimeout(configuration)
    }

    /// Connects on a new dedicated thread.
    ///
    /// - Parameters:
    ///   - configuration: Where and how to connect.
    ///   - ioThreads: I/O threads that run the connection's single statements without blocking,
    ///     for a session that can (``SQLNonBlockingSession``); `nil` (the default) for
    ///     ``SQLIOThreads/processDefault``: the shared I/O threads (``SQLIOThreads/shared``)
    ///     unless `SYNCBRIDGE_IO_THREADS=0`.
    ///   - cancellationGracePeriod: How long a statement that was cancelled, or ran past its
    ///     timeout, may wait for the server to answer; past it, the caller gets its error at once
    ///     and the connection is abandoned (its socket shut down, never reused). 2 s by default.
    ///   - logger: Receives the connection's logs; the password never appears in them.
    ///   - metricsFactory: Receives statement metrics (`db.client.operation.duration`,
    ///     `syncbridge.<database>.abandoned_connections`).
    /// - Throws: The session's connection error, naming the server and the reason.
    public static func connect(
        configuration: Session.Configuration,
        ioThreads: SQLIOThreads? = nil,
        cancellationGracePeriod: Duration = .seconds(2),
        logger: Logger = Logger(label: "SyncBridge.\(Session.databaseName)"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) async throws -> SQLConnection {
        let number = connectionNumbers.withLock { number in
            number += 1
            return number
        }
        let ioThreads = ioThreads ?? SQLIOThreads.processDefault
        let executor = ThreadExecutor(
            name: "sb-\(Session.databaseName)-\(number)",
            retiringAfterIdle: ioThreads.areOn ? SQLIOThreads.connectionThreadIdleLifetime : nil,
            logger: logger
        )
        do {
            let session = try await ThreadBound(on: executor) { try Session.open(configuration) }
            let (canceller, socket, target, reference) = try await session.withResource { session in
                (
                    session.makeCanceller(configuration: configuration),
                    session.socketDescriptor,
                    session.tracingTarget,
                    SessionReference(session)
                )
            }
            var logger = logger
            logger[metadataKey: "\(Session.databaseName).connection"] = "\(number)"
            logger.debug("connected", metadata: ["\(Session.databaseName).server": "\(configuration)"])
            let usable = Locked(true)
            let lane = makeIOLane(
                for: reference.session,
                canceller: canceller,
                on: ioThreads,
                runBlocking: { statement, done in
                    runBlocking(statement, session: session, canceller: canceller, usable: usable, then: done)
                },
                markUnusable: { usable.withLock { $0 = false } }
            )
            return SQLConnection(
                executor: executor,
                session: session,
                canceller: canceller,
                abandoner: SocketAbandoner(socket),
                cancellationGracePeriod: cancellationGracePeriod,
                configuration: configuration,
                logger: logger,
                metrics: SQLStatementMetrics(Session.self, target: target, factory: metricsFactory),
                tracingTarget: target,
                usable: usable,
                ioLane: lane
            )
        } catch {
            await executor.shutdownGracefully()
            throw error
        }
    }

    // MARK: Statements

    /// Runs a statement on this connection and returns what it produced (see ``SQLDatabase``'s
    /// `query` and `execute` for the usual forms).
    ///
    /// - Parameters:
    ///   - query: The statement; interpolated values are bound parameters.
    ///   - timeout: Ends the statement on the server if it runs longer, failing with the
    ///     database's typed timeout error; `nil` for no limit beyond the session's.
    ///   - callSite: Where the statement was issued.
    /// - Throws: The database's error from the server or the connection; ``SQLEncodingError`` for
    ///   a parameter that cannot be sent; `CancellationError` when the task was cancelled (the
    ///   statement is cancelled on the server).
    public func run(_ query: SQLQuery, timeout: Duration?, at callSite: CallSite) async throws -> SQLOutcome {
        guard let tracer = SQLTracing.tracer else {
            return try await runUntraced(query, timeout: timeout, at: callSite)
        }
        return try await SQLTracing.withSpan(
            tracer,
            Session.self,
            query: query,
            name: Session.tracingSystemName,
            target: tracingTarget
        ) { _ in try await runUntraced(query, timeout: timeout, at: callSite) }
    }

    /// ``run(_:timeout:at:)`` without a span of its own (a pooled call has one already).
    package func runUntraced(_ query: SQLQuery, timeout: Duration?, at callSite: CallSite?) async throws -> SQLOutcome {
        let start = monotonicNanoseconds()
        let limit = (timeout ?? defaultTimeout).map(SQLTimeout.init)
        do {
            let outcome: SQLOutcome
            if let ioLane {
                // Rows the I/O thread left undecoded are decoded here, on the caller's thread.
                outcome = try await runOnIOThread(query, timeout: limit, at: callSite, lane: ioLane).resolved()
            } else {
                outcome = try await withSession(timeout: limit, statement: query, at: callSite) { session in
                    try session.run(query, timeout: limit)
                }
            }
            metrics.record(query, start: start, errorType: nil)
            return outcome
        } catch {
            metrics.record(query, start: start, errorType: SQLTracing.errorType(of: error, Session.self))
            logger.debug("statement failed", metadata: ["db.query.text": "\(query)", "error": "\(error)"])
            throw error
        }
    }

    /// Runs a statement and streams its rows: they are read from the server in batches as the
    /// consumer asks for them, so a result of any size runs in bounded memory.
    ///
    /// Until the stream is finished or dropped the connection is busy: other statements on it
    /// fail with the database's "connection busy" error. Dropping the stream early stops the
    /// statement on the server.
    ///
    /// - Parameters:
    ///   - query: The statement.
    ///   - batchSize: Rows read per trip to the connection's thread.
    ///   - callSite: Where the statement was issued.
    /// - Returns: The rows, as an `AsyncSequence`.
    /// - Throws: As ``run(_:timeout:at:)``, for errors before the first rows.
    public func stream(_ query: SQLQuery, batchSize: Int, at callSite: CallSite) async throws -> SQLRowStream {
        let span = SQLTracing.tracer.map { tracer in
            SQLTracing.startSpan(
                tracer,
                Session.self,
                query: query,
                name: Session.tracingSystemName,
                target: tracingTarget
            )
        }
        return try await stream(query, batchSize: batchSize, span: span, onFinish: {})
    }

    /// Streams `query`; `onFinish` runs exactly once, when the rows are exhausted, the stream
    /// fails or it is abandoned (a pool releases its lease there). A `span` records the
    /// stream's errors and ends then.
    package func stream(
        _ query: SQLQuery,
        batchSize: Int,
        span: (any Span)? = nil,
        onFinish: @escaping @Sendable () -> Void
    ) async throws -> SQLRowStream {
        precondition(batchSize > 0, "batchSize must be positive")
        // Each trip to the thread runs in the stream's span, whoever asks for the next rows.
        @Sendable func recording<Value>(_ body: () async throws -> Value) async throws -> Value {
            guard let span else { return try await body() }
            do {
                return try await ServiceContext.$current.withValue(span.context) { try await body() }
            } catch {
                SQLTracing.record(error, Session.self, in: span)
                throw error
            }
        }
        let first = { [self] in
            try await recording {
                try await withSession { session in
                    try session.beginStream(query)
                    return try session.nextBatch(limit: batchSize)
                }
            }
        }
        return try await ServiceContext.$current.withValue(span?.context ?? ServiceContext.current) {
            try await .start(
                first: first,
                next: { [self] in
                    try await recording { try await withSession { session in try session.nextBatch(limit: batchSize) } }
                },
                abandon: { [self] done in abandonStream(then: done) },
                onFinish: {
                    span?.end()
                    onFinish()
                }
            )
        }
    }

    // MARK: The session on its thread

    /// Runs `body` with the session on the connection's thread, ordered after the work queued
    /// before it, keeping track of whether the connection broke.
    ///
    /// A cancel meant for an earlier statement settles first. When the task is cancelled while
    /// `body` runs, the canceller asks the server to stop it and the server's "cancelled" error
    /// becomes `CancellationError`; a task cancelled while `body` is still queued gets
    /// `CancellationError` at once, and `body` never runs. With a `timeout`, the server is asked
    /// to stop the statement when it passes (for sessions that do not enforce it themselves), and
    /// the error becomes the database's typed timeout error.
    ///
    /// Either way, the caller waits for the server no longer than ``cancellationGracePeriod``:
    /// past it, the caller gets its error, and the connection is abandoned — marked unusable, its
    /// socket shut down so that the blocked C call returns on its own thread.
    package func withSession<Result: Sendable>(
        timeout: SQLTimeout? = nil,
        statement: SQLQuery? = nil,
        at callSite: CallSite? = nil,
        _ body: @escaping @Sendable (Session) throws -> Result
    ) async throws -> Result {
        let call = SQLCall<Result>()
        let (canceller, usable, session, ioLane) = (self.canceller, self.usable, self.session, self.ioLane)
        let transactionStart = self.transactionStart
        // Taken here, in the task: behind statements in flight, the I/O thread submits the work.
        let origin = JobOrigin.current()
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                guard call.install(continuation) else { return }
                scheduleDeadlines(of: call, timeout: timeout, statement: statement)
                // A local function: its captures are boxed only when it goes to the I/O lane, not on
                // the direct call of a connection without one.
                @Sendable func submit() {
                    session.withResourceDetached(
                        actingFor: origin,
                        at: callSite,
                        detail: statement,
                        { session in
                            if call.begin() {
                                Self.perform(
                                    { session in
                                        try transactionStart.runPending(on: session)
                                        return try body(session)
                                    },
                                    for: call,
                                    timeout: timeout,
                                    statement: statement,
                                    session: session,
                                    canceller: canceller,
                                    usable: usable
                                )
                            }
                            ioLane?.leave()
                        },
                        ifClosed: {
                            call.finish(.failure(ExecutorError.resourceClosed(onThreadExecutor: session.executor.name)))
                            ioLane?.leave()
                        }
                    )
                }
                if let ioLane { ioLane.enter(submit) } else { submit() }
            }
        } onCancel: {
            interrupt(call)
        }
    }

    /// Runs a single statement on the connection's I/O thread, with the same cancellation,
    /// timeouts and grace period as ``withSession(timeout:statement:at:_:)``.
    private func runOnIOThread(
        _ query: SQLQuery,
        timeout: SQLTimeout?,
        at callSite: CallSite?,
        lane: any SQLIORouting
    ) async throws -> SQLOutcome {
        let call = SQLCall<SQLOutcome>()
        let statement = SQLIOStatement(
            query: query,
            timeout: timeout,
            call: call,
            callSite: callSite,
            transactionStart: transactionStart
        )
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                guard call.install(continuation) else { return }
                let (canceller, cancelsAtTimeout) = (self.canceller, self.cancelsAtTimeout)
                scheduleDeadlines(of: call, timeout: timeout, statement: query) { error in
                    lane.interrupt(statement, with: error) {
                        if cancelsAtTimeout { canceller.cancel() }
                    }
                }
                lane.submit(statement)
            }
        } onCancel: {
            interrupt(call) { [canceller] in
                lane.interrupt(statement, with: CancellationError()) { canceller.cancel() }
            }
        }
    }

    /// Runs `body` for `call`, which has begun, on the session's thread: settles earlier cancels
    /// first, turns the server's "cancelled" error into `CancellationError` or the timeout, and
    /// notes a broken connection before the caller resumes.
    private static func perform<Result: Sendable>(
        _ body: (Session) throws -> Result,
        for call: SQLCall<Result>,
        timeout: SQLTimeout?,
        statement: SQLQuery?,
        session: Session,
        canceller: Session.Canceller,
        usable: Locked<Bool>
    ) {
        let result: Swift.Result<Result, any Error>
        do {
            try settle(canceller, session)
            result = .success(try body(session))
        } catch  where Session.isCancellation(error) && (call.isCancelled || timeout?.hasPassed == true) {
            if session.isHealthy, (try? settle(canceller, session)) != nil {
                session.recoverFromCancellation()
            }
            if call.isCancelled || timeout == nil {
                result = .failure(CancellationError())
            } else {
                result = .failure(Session.timeoutError(timeout!, query: statement ?? ""))
            }
        } catch {
            result = .failure(error)
        }
        // Before the caller resumes: a pool that gets the connection back must know whether it
        // broke.
        if !session.isHealthy { usable.withLock { $0 = false } }
        call.finish(result)
    }

    /// Runs a statement that the I/O thread handed back (a cancel is pending or the session must
    /// recover from one) the blocking way, on the connection's thread; then calls `done`.
    fileprivate static func runBlocking(
        _ statement: SQLIOStatement,
        session: ThreadBound<Session>,
        canceller: Session.Canceller,
        usable: Locked<Bool>,
        then done: @escaping @Sendable () -> Void
    ) {
        session.withResourceDetached(
            actingFor: statement.origin,
            at: statement.callSite,
            detail: statement.query,
            { session in
                if session.isHealthy, (try? settle(canceller, session)) != nil {
                    session.recoverFromCancellation()
                }
                perform(
                    { session in
                        try statement.transactionStart?.runPending(on: session)
                        return try session.run(statement.query, timeout: statement.timeout)
                    },
                    for: statement.call,
                    timeout: statement.timeout,
                    statement: statement.query,
                    session: session,
                    canceller: canceller,
                    usable: usable
                )
                done()
            },
            ifClosed: {
                statement.call.finish(
                    .failure(ExecutorError.resourceClosed(onThreadExecutor: session.executor.name))
                )
                done()
            }
        )
    }

    /// Schedules what happens when a statement's timeout passes: a statement still queued ends
    /// at once with the timeout error; a running one is interrupted with it (`interrupt`; by
    /// default the server is asked to stop it, for sessions that do not enforce timeouts
    /// themselves); past the grace period the caller gets the timeout error and the connection
    /// is abandoned. The error is made only when the timeout passes.
    private func scheduleDeadlines<Result>(
        of call: SQLCall<Result>,
        timeout: SQLTimeout?,
        statement: SQLQuery?,
        interrupt: (@Sendable (any Error) -> Void)? = nil
    ) {
        guard let timeout else { return }
        let (canceller, cancelsAtTimeout) = (self.canceller, self.cancelsAtTimeout)
        // A statement still queued behind others ends at once: a cancel would reach the one
        // running, which is not this one.
        call.schedule(at: timeout.deadline) {
            let error = Session.timeoutError(timeout, query: statement ?? "")
            guard call.expire(with: error) == .running else { return }
            if let interrupt {
                interrupt(error)
            } else if cancelsAtTimeout {
                canceller.cancel()
            }
        }
        let grace = UInt64(max(0, cancellationGracePeriod.nanosecondCount))
        call.schedule(at: timeout.deadline &+ grace) { [self] in
            abandon(call, because: Session.timeoutError(timeout, query: statement ?? ""), after: "its timeout")
        }
    }

    /// The task of `call` was cancelled: a running statement is interrupted (`running`; by
    /// default the server is asked to cancel it), and the connection is abandoned if the server
    /// does not answer within the grace period.
    private func interrupt<Result>(_ call: SQLCall<Result>, running: (() -> Void)? = nil) {
        guard call.cancel() == .running else { return }
        if let running { running() } else { canceller.cancel() }
        let grace = UInt64(max(0, cancellationGracePeriod.nanosecondCount))
        call.schedule(at: monotonicNanoseconds() &+ grace) { [self] in
            abandon(call, because: CancellationError(), after: "a cancel")
        }
    }

    /// Ends `call` with `error` if the server still has not answered, and abandons the
    /// connection: it is never reused, and its socket is shut down so that the C call blocked on
    /// it returns.
    private func abandon<Result>(_ call: SQLCall<Result>, because error: any Error, after reason: String) {
        // Unusable before the caller resumes, so that its pool discards the connection. (When the
        // thread finishes at this very moment, the connection is discarded for nothing.)
        usable.withLock { $0 = false }
        guard call.finish(.failure(error)) else { return }
        abandoner.abandon()
        metrics.abandoned.increment()
        logger.warning(
            "the server did not answer within the grace period after \(reason); the connection is abandoned",
            metadata: ["grace_period": "\(cancellationGracePeriod)"]
        )
    }

    /// Like ``withSession(_:)``, but runs even when the calling task is cancelled: for statements
    /// that end something (a COPY, a transaction) and must not be skipped.
    package func withSessionIgnoringCancellation<Result: Sendable>(
        _ body: @escaping @Sendable (Session) throws -> Result
    ) async throws -> Result {
        let (session, usable, canceller, ioLane) = (self.session, self.usable, self.canceller, self.ioLane)
        // The caller's, taken before its turn: the work is for it, not for the detached task.
        let origin = JobOrigin.current()
        return try await Task.detached {
            await Self.enter(ioLane)
            defer { ioLane?.leave() }
            return try await session.withResource(actingFor: origin, at: nil, detail: nil) { session, _ in
                defer { if !session.isHealthy { usable.withLock { $0 = false } } }
                try? Self.settle(canceller, session)
                return try body(session)
            }
        }.value
    }

    /// Queues `body` on the connection's thread, ordered before any later statement, without
    /// waiting; then runs `done` (also when the connection is closed). For clean-up that starts
    /// from synchronous code, such as an abandoned stream.
    package func withSessionDetached(
        _ body: @escaping @Sendable (Session, Session.Canceller) -> Void,
        then done: @escaping @Sendable () -> Void
    ) {
        let (canceller, usable, session, ioLane) = (self.canceller, self.usable, self.session, self.ioLane)
        @Sendable func submit() {
            session.withResourceDetached(
                { session in
                    body(session, canceller)
                    if !session.isHealthy { usable.withLock { $0 = false } }
                    done()
                    ioLane?.leave()
                },
                ifClosed: {
                    done()
                    ioLane?.leave()
                }
            )
        }
        if let ioLane { ioLane.enter(submit) } else { submit() }
    }

    /// Waits until the session is free for blocking work on the connection's thread (everything
    /// queued on the I/O thread before is done); the caller then calls `leave()`. Nothing to wait
    /// for without an I/O thread.
    private static func enter(_ ioLane: (any SQLIORouting)?) async {
        guard let ioLane else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            ioLane.enter { continuation.resume() }
        }
    }

    /// Waits for pending cancels; a connection whose cancel never settled is broken.
    private static func settle(_ canceller: Session.Canceller, _ session: Session) throws {
        do {
            try canceller.settle()
        } catch {
            session.markBroken()
            throw error
        }
    }

    /// Abandons a streamed statement in progress, ordered before any later statement; then runs
    /// `done`.
    private func abandonStream(then done: @escaping @Sendable () -> Void) {
        withSessionDetached(
            { session, canceller in
                session.abandonStream {
                    canceller.cancel()
                    try? Self.settle(canceller, session)
                }
            },
            then: done
        )
    }

    // MARK: Legacy code

    /// Runs existing synchronous C client code with the raw handle, on the connection's own
    /// thread.
    ///
    /// This is the migration escape hatch: legacy functions keep their signatures and keep calling
    /// the C library directly, but run where the connection lives instead of on a cooperative
    /// thread. Cancelling the task cancels whatever statement the code is running, on the server.
    /// Calls run one at a time, in order; on I/O threads, two calls a second or more apart may run
    /// on different OS threads of the same name (the connection's thread retires while idle), so
    /// legacy code that keeps thread-local state between calls needs ``SQLIOThreads/off``.
    ///
    /// ```swift
    /// let total = try await connection.withRawConnection { handle in
    ///     LegacyInventory.totalStock(handle)   // calls the C client itself
    /// }
    /// ```
    ///
    /// - Parameter body: Synchronous code using the handle. It must not keep the handle, close it,
    ///   change its options, or leave a transaction or a result pending.
    /// - Returns: What `body` returns.
    public func withRawConnection<Result>(
        _ body: sending @escaping (Session.RawHandle) throws -> sending Result
    ) async throws -> sending Result {
        guard let tracer = SQLTracing.tracer else { return try await withRawConnectionUntraced(body) }
        // The closure hands `body` on once, to the untraced call; nothing else uses it.
        nonisolated(unsafe) let body = body
        let result = try await SQLTracing.withSpan(
            tracer,
            Session.self,
            query: nil,
            name: "withRawConnection",
            target: tracingTarget
        ) { _ in Sent(try await withRawConnectionUntraced(body)) }
        return result.value
    }

    /// ``withRawConnection(_:)`` without a span of its own (a pooled call has one already).
    package func withRawConnectionUntraced<Result>(
        at callSite: CallSite? = nil,
        _ body: sending @escaping (Session.RawHandle) throws -> sending Result
    ) async throws -> sending Result {
        let (canceller, usable, ioLane, transactionStart) = (
            self.canceller, self.usable, self.ioLane, self.transactionStart
        )
        // Taken before its turn: its wait counts from here.
        let origin = JobOrigin.current()
        await Self.enter(ioLane)
        defer { ioLane?.leave() }
        let detail = "withRawConnection"
        return try await session.withResource(actingFor: origin, at: callSite, detail: detail) { session, job in
            defer {
                // Legacy code reports a broken connection only through its own error handling.
                session.checkAfterRawAccess()
                if !session.isHealthy { usable.withLock { $0 = false } }
            }
            try? Self.settle(canceller, session)
            try transactionStart.runPending(on: session)
            return try job.withInterruptHandler({ canceller.cancel() }) { try body(session.rawHandle) }
        }
    }

    // MARK: Health

    /// `false` once the connection broke (or was closed): a pool discards such connections. Costs
    /// no round trip.
    public var isUsable: Bool {
        usable.current
    }

    /// Whether the server answers a round trip on this connection.
    public func checkHealth() async -> Bool {
        guard isUsable else { return false }
        let alive = (try? await withSession { session in session.ping() }) ?? false
        if !alive { usable.withLock { $0 = false } }
        return alive
    }

    /// Closes the connection and stops its thread. Statements queued before finish first.
    public func close() async {
        usable.withLock { $0 = false }
        let (session, canceller, executor, abandoner) = (self.session, self.canceller, self.executor, self.abandoner)
        let ioLane = self.ioLane
        // In a task of its own, which the caller's cancellation does not reach: a cancelled pool
        // still closes its connections.
        await Task.detached {
            await Self.enter(ioLane)
            // The I/O thread stops watching the socket before the session closes it (its number
            // may be reused at once).
            await ioLane?.detach(closedError: ExecutorError.resourceClosed(onThreadExecutor: executor.name))
            defer { ioLane?.leave() }
            try? await session.close { session in
                canceller.invalidate()
                abandoner.invalidate()
                session.close()
            }
            await executor.shutdownGracefully()
        }.value
        logger.debug("closed")
    }

    // MARK: Transactions

    /// Runs `body` in a transaction: commits when it returns, rolls back when it throws or when
    /// the task is cancelled. Nested calls use savepoints, so an inner failure rolls back only
    /// the inner part.
    ///
    /// On an I/O thread whose session can (``SQLTransactionStartPipelining``: PostgreSQL's),
    /// `BEGIN` is not sent alone: it reaches the server with the transaction's first statement,
    /// behind one sync point, so a transaction costs one round trip fewer. Whatever `body` does
    /// first (a statement, a stream, COPY, `withRawConnection`) runs inside the transaction; if
    /// the server refuses the start, that first statement does not run, it and every later one
    /// fail with ``SQLTransactionNotStarted``, and `withTransaction` throws the server's error.
    ///
    /// - Parameters:
    ///   - isolation: The isolation level; the session's when `nil`. Ignored when nested.
    ///   - readOnly: Starts a read-only transaction. Ignored when nested.
    ///   - callSite: Where the transaction was started.
    ///   - body: The work; it receives this connection.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws (after the rollback); `CancellationError` when the task was
    ///   cancelled; the database's error when `COMMIT` fails.
    public func withTransaction<Result: Sendable>(
        isolation: SQLIsolationLevel?,
        readOnly: Bool,
        at callSite: CallSite,
        _ body: (SQLConnection) async throws -> Result
    ) async throws -> Result {
        guard let tracer = SQLTracing.tracer else {
            return try await withTransactionUntraced(isolation: isolation, readOnly: readOnly, body)
        }
        return try await SQLTracing.withSpan(
            tracer,
            Session.self,
            query: nil,
            name: "transaction",
            target: tracingTarget
        ) { _ in try await withTransactionUntraced(isolation: isolation, readOnly: readOnly, body) }
    }

    /// ``withTransaction(isolation:readOnly:at:_:)`` without a span of its own (a pooled call has
    /// one already).
    package func withTransactionUntraced<Result: Sendable>(
        isolation: SQLIsolationLevel?,
        readOnly: Bool,
        _ body: (SQLConnection) async throws -> Result
    ) async throws -> Result {
        try await withTransactionUntraced(
            starting: Session.transactionStart(isolation: isolation, readOnly: readOnly),
            body
        )
    }

    /// ``withTransactionUntraced(isolation:readOnly:_:)`` with the statements that start the
    /// outermost transaction given (tests use statements the server refuses).
    ///
    /// On an I/O thread whose session can (``SQLTransactionStartPipelining``), the start waits
    /// for the transaction's first statement and reaches the server with it, one round trip
    /// fewer; a transaction whose start failed there throws the server's error, as a start sent
    /// alone does.
    package func withTransactionUntraced<Result: Sendable>(
        starting start: [String],
        _ body: (SQLConnection) async throws -> Result
    ) async throws -> Result {
        let deferStart = ioLane?.pipelinesTransactionStart ?? false
        func startTransaction(_ start: [String]) async throws {
            if deferStart {
                transactionStart.hold(start)
            } else {
                for statement in start { try await runTransactionControl(statement) }
            }
        }
        do {
            return try await transactions.run(
                begin: start,
                start: startTransaction,
                execute: runTransactionControl,
                executeIgnoringCancellation: rollBack,
                ended: transactionStart.end
            ) {
                try await body(self)
            }
        } catch let failure as SQLTransactionNotStarted {
            throw failure.underlying
        }
    }

    /// Runs one transaction-control statement (`BEGIN`, `COMMIT`, `SAVEPOINT …`): on the I/O
    /// thread when the connection has one, like any single statement, so that a transaction's
    /// statements do not move between threads; otherwise on the connection's thread.
    private func runTransactionControl(_ sql: String) async throws {
        guard let ioLane else { return try await runControl(sql) }
        _ = try await runOnIOThread(SQLQuery(unsafeSQL: sql), timeout: nil, at: nil, lane: ioLane)
    }

    /// Runs a control statement (`BEGIN`, `LISTEN`, …) on the connection's thread.
    package func runControl(_ sql: String) async throws {
        try await withSession { session in try session.runControl(sql) }
    }

    /// Runs rollback statements even when the task is cancelled: they run in a task of their
    /// own, which the caller's cancellation does not reach.
    private func rollBack(_ statements: [String]) async {
        // Nothing of the transaction reached the server, or its start failed there.
        if transactionStart.isNotOpenOnServer { return }
        do {
            try await withSessionIgnoringCancellation { session in
                for sql in statements { try session.runControl(sql) }
            }
        } catch {
            logger.warning("rollback failed", metadata: ["error": "\(error)"])
        }
    }
}

/// Numbers connections across every database, for their threads' names.
private let sqlConnectionNumbers = Locked(0)

extension SQLTimeout {
    /// Whether the deadline has passed.
    var hasPassed: Bool { monotonicNanoseconds() >= deadline }
}

/// The session, made on its connection's thread, for the connection's I/O lane.
private struct SessionReference<Session: SQLSession>: @unchecked Sendable {
    // Safe: the lane uses the session only while its queue makes it the session's sole user (the
    // connection's thread leaves it alone meanwhile); see `SQLIOLane`.
    let session: Session

    init(_ session: Session) {
        self.session = session
    }
}

/// Shuts a connection's socket down from another thread, to make a C call that waits for a server
/// that does not answer return on its own thread. The lock keeps the descriptor from being shut
/// down once the session has closed it (the number may then belong to another file).
final class SocketAbandoner: Sendable {
    private let descriptor: Locked<Int32?>

    init(_ descriptor: Int32?) {
        self.descriptor = Locked(descriptor)
    }

    /// Shuts the socket down in both directions; reads and writes on it fail from now on.
    func abandon() {
        descriptor.withLock { descriptor in
            if let descriptor { _ = shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
    }

    /// The session is closing its socket: later calls do nothing.
    func invalidate() {
        descriptor.withLock { $0 = nil }
    }
}

/// Carries a non-`Sendable` result out of a span's closure, which hands it straight back.
package struct Sent<Value>: @unchecked Sendable {
    // Safe: the value moves from the closure that made it to the caller that returns it, and
    // nothing else holds it (the `sending` results it wraps are disconnected).
    package let value: Value

    package init(_ value: consuming sending Value) {
        self.value = value
    }
}

extension SQLConnection: IOThreadAffine {
    package var ioThreadAffinity: UInt { ioLane?.thread.affinity ?? 0 }
}
