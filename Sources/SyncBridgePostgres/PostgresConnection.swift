import CLibPQ
public import Logging
public import Metrics
public import SyncBridge
public import SyncBridgeSQL

/// One PostgreSQL connection over libpq, living on its own dedicated thread.
///
/// Every libpq call on the connection runs on its ``ThreadExecutor``'s thread, never on Swift's
/// cooperative pool; callers suspend meanwhile. Statements run one at a time in submission order.
/// Cancelling the task of a running statement cancels it **on the server** (`PQcancel`) and the
/// connection stays usable.
///
/// ```swift
/// let connection = try await PostgresConnection.connect("postgres://app@db.internal/app")
/// let rows = try await connection.query("SELECT id, name FROM users WHERE team = \(team)")
/// for row in rows {
///     let (id, name) = try row.decode((Int, String).self)
/// }
/// try await connection.close()
/// ```
///
/// A connection serves one task at a time; for concurrent work, use one connection per task (a
/// pool will lease them).
public final class PostgresConnection: PooledConnection, CustomStringConvertible {
    /// The thread the connection lives on.
    public let executor: ThreadExecutor
    /// Receives the connection's logs.
    public let logger: Logger
    /// The connection's parameters without the password.
    public let description: String
    private let session: ThreadBound<PostgresSession>
    private let canceller: PostgresCanceller
    private let transactions = SQLTransactionNesting()
    private let metrics: SQLStatementMetrics
    /// Cleared once libpq reports the connection broken; a pool then discards it.
    private let usable = Locked(true)

    private static let connectionNumbers = Locked(0)

    private init(
        executor: ThreadExecutor,
        session: ThreadBound<PostgresSession>,
        canceller: PostgresCanceller,
        description: String,
        logger: Logger,
        metrics: SQLStatementMetrics
    ) {
        self.executor = executor
        self.session = session
        self.canceller = canceller
        self.description = description
        self.logger = logger
        self.metrics = metrics
    }

    /// Connects to PostgreSQL on a new dedicated thread.
    ///
    /// - Parameters:
    ///   - connectionString: A libpq connection string (`host=… dbname=…`) or URL
    ///     (`postgres://user:password@host:5432/db?sslmode=require`), parsed by libpq itself, so
    ///     every libpq option works: several hosts with `target_session_attrs`, `sslmode`,
    ///     `connect_timeout` (10 s unless given), `application_name`…
    ///   - statementTimeout: The session's default `statement_timeout`: the server cancels any
    ///     statement that runs longer. `nil` keeps the server's default.
    ///   - logger: Receives the connection's logs; the password never appears in them.
    ///   - metricsFactory: Receives statement metrics (`syncbridge.postgres.*`).
    /// - Throws: ``PostgresError`` with kind ``PostgresError/Kind/connectionFailed`` naming the host
    ///   that failed and libpq's reason.
    public static func connect(
        _ connectionString: String,
        statementTimeout: Duration? = nil,
        logger: Logger = Logger(label: "SyncBridge.Postgres"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) async throws -> PostgresConnection {
        let description = try redactedDescription(of: connectionString)
        let number = connectionNumbers.withLock { number in
            number += 1
            return number
        }
        let executor = ThreadExecutor(name: "sb-pg-\(number)", logger: logger)
        do {
            let session = try await ThreadBound(on: executor) {
                try PostgresSession.open(connectionString, statementTimeout: statementTimeout)
            }
            let canceller = try await session.withResource { session in
                PostgresCanceller(PQgetCancel(session.connection))
            }
            var logger = logger
            logger[metadataKey: "pg.connection"] = "\(number)"
            logger.debug("connected", metadata: ["pg.server": "\(description)"])
            return PostgresConnection(
                executor: executor,
                session: session,
                canceller: canceller,
                description: description,
                logger: logger,
                metrics: SQLStatementMetrics(prefix: "syncbridge.postgres", factory: metricsFactory)
            )
        } catch {
            await executor.shutdownGracefully()
            throw error
        }
    }

    /// Runs a statement and returns all its rows.
    ///
    /// - Parameters:
    ///   - query: The statement; interpolated values are bound parameters.
    ///   - timeout: Cancels the statement on the server if it runs longer, failing with
    ///     ``PostgresError/Kind/timedOut``; `nil` for no limit beyond the session's.
    /// - Returns: The rows, each with its columns' names and types.
    /// - Throws: ``PostgresError`` from the server or the connection; ``SQLEncodingError`` for a
    ///   parameter that cannot be sent; `CancellationError` when the task was cancelled (the
    ///   statement is cancelled on the server).
    @discardableResult
    public func query(_ query: SQLQuery, timeout: Duration? = nil) async throws -> [SQLRow] {
        try await run(query, timeout: timeout).rows
    }

    /// Runs a statement and streams its rows: they are read from the server in batches as the
    /// consumer asks for them (libpq's single-row mode), so a result of any size runs in bounded
    /// memory.
    ///
    /// ```swift
    /// for try await row in try await connection.stream("SELECT id, payload FROM events") {
    ///     try process(row.decode((Int, String).self))
    /// }
    /// ```
    ///
    /// Until the stream is finished or dropped the connection is busy: other statements on it
    /// fail with ``PostgresError/Kind/connectionBusy``. Dropping the stream early cancels the
    /// statement on the server.
    ///
    /// - Parameters:
    ///   - query: The statement.
    ///   - batchSize: Rows read per trip to the connection's thread.
    /// - Returns: The rows, as an `AsyncSequence`.
    /// - Throws: As ``query(_:)``, for errors the server reports before the first rows.
    public func stream(_ query: SQLQuery, batchSize: Int = 1000) async throws -> SQLRowStream {
        try await stream(query, batchSize: batchSize, onFinish: {})
    }

    /// Streams `query`; `onFinish` runs exactly once, when the rows are exhausted, the stream
    /// fails or it is abandoned (a pool releases its lease there).
    func stream(
        _ query: SQLQuery,
        batchSize: Int,
        onFinish: @escaping @Sendable () -> Void
    ) async throws -> SQLRowStream {
        precondition(batchSize > 0, "batchSize must be positive")
        return try await .start(
            first: {
                try await withSession { session, _ in
                    try session.beginStream(query)
                    return try session.nextBatch(limit: batchSize)
                }
            },
            next: { [self] in try await withSession { session, _ in try session.nextBatch(limit: batchSize) } },
            abandon: { [self] done in abandonStream(then: done) },
            onFinish: onFinish
        )
    }

    /// Runs `body` with the session on the connection's thread, with server-side cancellation,
    /// keeping track of whether the connection broke.
    func withSession<Result: Sendable>(
        _ body: sending @escaping (PostgresSession, BlockingJobContext) throws -> Result
    ) async throws -> Result {
        let (canceller, usable) = (self.canceller, self.usable)
        return try await session.withResource { session, job in
            defer { if !session.isHealthy { usable.withLock { $0 = false } } }
            return try Self.cancellable(job, canceller) { try body(session, job) }
        }
    }

    /// Like ``withSession(_:)``, but runs even when the calling task is cancelled: for statements
    /// that end something (a COPY, a transaction) and must not be skipped.
    func withSessionIgnoringCancellation<Result: Sendable>(
        _ body: @escaping @Sendable (PostgresSession) throws -> Result
    ) async throws -> Result {
        let (session, usable) = (self.session, self.usable)
        return try await Task.detached {
            try await session.withResource { session in
                defer { if !session.isHealthy { usable.withLock { $0 = false } } }
                return try body(session)
            }
        }.value
    }

    /// Abandons a streamed statement in progress, ordered before any later statement; then runs
    /// `done`.
    func abandonStream(then done: @escaping @Sendable () -> Void) {
        let canceller = self.canceller
        session.withResourceDetached(
            { session in
                session.abandonStream { canceller.cancel() }
                done()
            },
            ifClosed: done
        )
    }

    /// Abandons a `COPY` in progress, ordered before any later statement; then runs `done`.
    func abandonCopy(then done: @escaping @Sendable () -> Void) {
        let canceller = self.canceller
        session.withResourceDetached(
            { session in
                session.abandonCopy { canceller.cancel() }
                done()
            },
            ifClosed: done
        )
    }

    /// Waits up to `timeout` for notifications on the channels this connection listens to.
    func pollNotifications(timeout: Duration) async throws -> [PostgresNotification] {
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        return try await withSession { session, _ in
            try session.pollNotifications(timeoutMilliseconds: milliseconds)
        }
    }

    /// Runs a statement through the simple protocol (no parameters): `LISTEN`, `UNLISTEN`.
    func runSimple(_ sql: String) async throws {
        try await withSession { session, _ in try session.runSimple(sql) }
    }

    /// Runs a statement that returns no rows and reports how many rows it affected.
    ///
    /// - Parameters:
    ///   - query: The statement; interpolated values are bound parameters.
    ///   - timeout: As in ``query(_:timeout:)``.
    /// - Returns: The affected row count (`INSERT`, `UPDATE`, `DELETE`, `COPY`…; 0 otherwise).
    /// - Throws: As ``query(_:timeout:)``.
    @discardableResult
    public func execute(_ query: SQLQuery, timeout: Duration? = nil) async throws -> Int {
        try await run(query, timeout: timeout).rowsAffected
    }

    private func run(_ query: SQLQuery, timeout: Duration?) async throws -> PostgresSession.Outcome {
        let start = monotonicNanoseconds()
        let deadline = timeout.map { start &+ UInt64(max(0, $0.components.seconds * 1_000_000_000 + $0.components.attoseconds / 1_000_000_000)) }
        do {
            let outcome = try await withSession { session, _ in try session.run(query, deadline: deadline) }
            metrics.record(start: start, failed: false)
            return outcome
        } catch {
            metrics.record(start: start, failed: true)
            logger.debug("statement failed", metadata: ["pg.query": "\(query)", "error": "\(error)"])
            throw error
        }
    }

    /// Runs `operation` with the connection's cancel request as the job's interrupt handler, and
    /// turns the server's "canceled" error into `CancellationError` when the task was cancelled.
    static func cancellable<Result>(
        _ job: BlockingJobContext,
        _ canceller: PostgresCanceller,
        _ operation: () throws -> Result
    ) throws -> Result {
        do {
            return try job.withInterruptHandler({ canceller.cancel() }) { try operation() }
        } catch let error as PostgresError where error.isQueryCanceled && job.isCancelled {
            throw CancellationError()
        }
    }

    /// Runs existing synchronous libpq code with the raw `PGconn*`, on the connection's own thread.
    ///
    /// This is the migration escape hatch: legacy functions keep their signatures and keep
    /// calling libpq directly, but run where the connection lives instead of on a cooperative
    /// thread. Cancelling the task sends a cancel request for whatever statement the code is
    /// running.
    ///
    /// ```swift
    /// let total = try await connection.withRawConnection { pgconn in
    ///     LegacyInventory.totalStock(pgconn)   // calls PQexec itself
    /// }
    /// ```
    ///
    /// - Parameter body: Synchronous code using the handle. It must not keep the handle, close it,
    ///   or leave a transaction or a result pending.
    /// - Returns: What `body` returns.
    public func withRawConnection<Result>(
        _ body: sending @escaping (OpaquePointer) throws -> sending Result
    ) async throws -> sending Result {
        let canceller = self.canceller
        let usable = self.usable
        return try await session.withResource { session, job in
            defer { if !session.isHealthy { usable.withLock { $0 = false } } }
            return try job.withInterruptHandler({ canceller.cancel() }) { try body(session.connection) }
        }
    }

    /// `false` once libpq has reported the connection broken (or it was closed): a pool discards
    /// such connections. Costs no round trip.
    public var isUsable: Bool {
        usable.current
    }

    /// Whether the server answers `SELECT 1` on this connection.
    public func checkHealth() async -> Bool {
        guard isUsable else { return false }
        return (try? await query("SELECT 1").count) == 1
    }

    /// Closes the connection and stops its thread. Statements queued before finish first.
    public func close() async {
        usable.withLock { $0 = false }
        let canceller = self.canceller
        try? await session.close { session in
            canceller.invalidate()
            session.close()
        }
        await executor.shutdownGracefully()
        logger.debug("closed")
    }

    // MARK: Transactions

    /// How concurrent transactions see each other's changes.
    public enum IsolationLevel: String, Sendable {
        /// PostgreSQL's default.
        case readCommitted = "READ COMMITTED"
        /// A snapshot for the whole transaction.
        case repeatableRead = "REPEATABLE READ"
        /// As if transactions ran one after another; may fail with a serialization error
        /// (``PostgresError/isSerializationFailure``) that a retry resolves.
        case serializable = "SERIALIZABLE"
    }

    /// Runs `body` in a transaction: commits when it returns, rolls back when it throws or when
    /// the task is cancelled. Nested calls use savepoints, so an inner failure rolls back only
    /// the inner part.
    ///
    /// - Parameters:
    ///   - isolation: The isolation level; the server's default when `nil`. Ignored when nested.
    ///   - readOnly: Starts a read-only transaction. Ignored when nested.
    ///   - body: The work; it receives this connection.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws (after the rollback); `CancellationError` when the task was
    ///   cancelled; ``PostgresError`` when `COMMIT` fails.
    @discardableResult
    public func withTransaction<Result: Sendable>(
        isolation: IsolationLevel? = nil,
        readOnly: Bool = false,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        var begin = "BEGIN"
        if let isolation { begin += " ISOLATION LEVEL \(isolation.rawValue)" }
        if readOnly { begin += " READ ONLY" }
        return try await transactions.run(
            begin: [begin],
            execute: runControl,
            executeIgnoringCancellation: rollBack
        ) {
            try await body(self)
        }
    }

    private func runControl(_ sql: String) async throws {
        try await withSession { session, _ in try session.runSimple(sql) }
    }

    /// Runs rollback statements even when the task is cancelled: they run in a task of their
    /// own, which the caller's cancellation does not reach.
    private func rollBack(_ statements: [String]) async {
        do {
            try await withSessionIgnoringCancellation { session in
                for sql in statements { try session.runSimple(sql) }
            }
        } catch {
            logger.warning("rollback failed", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Describing

    /// The connection string's options, with the password (and any other secret option) left out.
    static func redactedDescription(of connectionString: String) throws -> String {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(connectionString, &errorMessage) else {
            let message = errorMessage.map { String(cString: $0) } ?? "invalid connection string"
            PQfreemem(errorMessage)
            throw PostgresError(
                kind: .connectionFailed,
                message: message.trimmedWhitespace,
                sqlState: "08006"
            )
        }
        defer { PQconninfoFree(options) }
        var parts: [String] = []
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                let name = String(cString: keyword)
                let isSecret = option.pointee.dispchar.map { String(cString: $0) == "*" } ?? false
                if !isSecret && name != "password" {
                    parts.append("\(name)=\(String(cString: value))")
                }
            }
            option += 1
        }
        return parts.joined(separator: " ")
    }
}

/// Sends cancel requests for a connection's running statement, from any thread.
///
/// libpq's `PGcancel` is made for exactly this: `PQcancel` is safe to call from another thread
/// than the connection's. The lock keeps it from being freed while a cancel is being sent.
final class PostgresCanceller: Sendable {
    private let handle: Locked<OpaquePointer?>

    init(_ handle: OpaquePointer?) {
        self.handle = Locked(handle)
    }

    /// Asks the server to cancel the statement running now, if any.
    func cancel() {
        handle.withLock { handle in
            guard let handle else { return }
            var buffer = [CChar](repeating: 0, count: 256)
            _ = PQcancel(handle, &buffer, Int32(buffer.count))
        }
    }

    /// Frees the handle; later `cancel()` calls do nothing.
    func invalidate() {
        handle.withLock { handle in
            if let current = handle { PQfreeCancel(current) }
            handle = nil
        }
    }
}
