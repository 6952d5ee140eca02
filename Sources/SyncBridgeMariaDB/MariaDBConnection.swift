public import CMariaDB
public import Logging
public import Metrics
public import SyncBridge
public import SyncBridgeSQL

/// One MariaDB/MySQL connection over Connector/C, living on its own dedicated thread.
///
/// Every Connector/C call on the connection runs on its ``ThreadExecutor``'s thread, never on
/// Swift's cooperative pool; callers suspend meanwhile. Statements run one at a time in submission
/// order, as prepared statements over the binary protocol: interpolated values are bound, never
/// spliced into the SQL. Cancelling the task of a running statement sends `KILL QUERY` from a side
/// connection, so the server stops working on it, and the connection stays usable.
///
/// ```swift
/// let connection = try await MariaDBConnection.connect(url: "mariadb://app:secret@db.internal/shop")
/// let rows = try await connection.query("SELECT id, name FROM products WHERE price < \(limit)")
/// for row in rows {
///     let (id, name) = try row.decode((Int, String).self)
/// }
/// await connection.close()
/// ```
///
/// A connection serves one task at a time; for concurrent work, use a ``MariaDBClient``, whose pool
/// leases connections.
public final class MariaDBConnection: PooledConnection, CustomStringConvertible {
    /// The thread the connection lives on.
    public let executor: ThreadExecutor
    /// Receives the connection's logs.
    public let logger: Logger
    /// The server's id of this connection (`CONNECTION_ID()`), as `SHOW PROCESSLIST` and `KILL`
    /// name it.
    public let serverConnectionID: UInt
    /// Where the connection goes, without the password.
    public let description: String
    private let session: ThreadBound<MariaDBSession>
    private let canceller: MariaDBCanceller
    private let transactions = SQLTransactionNesting()
    private let metrics: SQLStatementMetrics
    /// Cleared once the connection broke; a pool then discards it.
    private let usable = Locked(true)

    private static let connectionNumbers = Locked(0)

    private init(
        executor: ThreadExecutor,
        session: ThreadBound<MariaDBSession>,
        serverConnectionID: UInt,
        configuration: MariaDBConfiguration,
        logger: Logger,
        metrics: SQLStatementMetrics
    ) {
        self.executor = executor
        self.session = session
        self.serverConnectionID = serverConnectionID
        self.canceller = MariaDBCanceller(threadID: serverConnectionID, configuration: configuration)
        self.description = configuration.description
        self.logger = logger
        self.metrics = metrics
    }

    /// Connects on a new dedicated thread.
    ///
    /// - Parameters:
    ///   - configuration: Where and how to connect (see ``MariaDBConfiguration`` for the safe
    ///     defaults).
    ///   - logger: Receives the connection's logs; the password never appears in them.
    ///   - metricsFactory: Receives statement metrics (`syncbridge.mariadb.*`).
    /// - Throws: ``MariaDBError`` with kind ``MariaDBError/Kind/connectionFailed`` naming the server
    ///   and Connector/C's reason.
    public static func connect(
        configuration: MariaDBConfiguration,
        logger: Logger = Logger(label: "SyncBridge.MariaDB"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) async throws -> MariaDBConnection {
        let number = connectionNumbers.withLock { number in
            number += 1
            return number
        }
        let executor = ThreadExecutor(name: "sb-mariadb-\(number)", logger: logger)
        do {
            let session = try await ThreadBound(on: executor) { try MariaDBSession.open(configuration) }
            let serverConnectionID = try await session.withResource { session in session.threadID }
            var logger = logger
            logger[metadataKey: "mariadb.connection"] = "\(serverConnectionID)"
            logger.debug("connected", metadata: ["mariadb.server": "\(configuration)"])
            return MariaDBConnection(
                executor: executor,
                session: session,
                serverConnectionID: serverConnectionID,
                configuration: configuration,
                logger: logger,
                metrics: SQLStatementMetrics(prefix: "syncbridge.mariadb", factory: metricsFactory)
            )
        } catch {
            await executor.shutdownGracefully()
            throw error
        }
    }

    /// Connects to the server a `mariadb://` or `mysql://` URL names (see
    /// ``MariaDBConfiguration/init(url:)``).
    public static func connect(
        url: String,
        logger: Logger = Logger(label: "SyncBridge.MariaDB"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) async throws -> MariaDBConnection {
        try await connect(configuration: MariaDBConfiguration(url: url), logger: logger, metricsFactory: metricsFactory)
    }

    // MARK: Statements

    /// Runs a statement and returns all its rows.
    ///
    /// - Parameters:
    ///   - query: The statement; interpolated values are bound parameters.
    ///   - timeout: The server aborts the statement if it runs longer (`max_statement_time`),
    ///     failing with ``MariaDBError/Kind/timedOut``; `nil` for the session's limit.
    /// - Returns: The rows, each with its columns' names and types.
    /// - Throws: ``MariaDBError`` from the server or the connection; ``SQLEncodingError`` for a
    ///   value MariaDB cannot take; `CancellationError` when the task was cancelled (the statement
    ///   is interrupted on the server).
    @discardableResult
    public func query(_ query: SQLQuery, timeout: Duration? = nil) async throws -> [SQLRow] {
        try await run(query, timeout: timeout).rows
    }

    /// Runs a statement that returns no rows and reports how many rows it matched.
    ///
    /// The count is of rows *found*, as PostgreSQL counts them: an `UPDATE` that matches a row
    /// but leaves it unchanged still counts it.
    ///
    /// - Parameters:
    ///   - query: The statement; interpolated values are bound parameters.
    ///   - timeout: As in ``query(_:timeout:)``.
    /// - Returns: The affected row count.
    /// - Throws: As ``query(_:timeout:)``.
    @discardableResult
    public func execute(_ query: SQLQuery, timeout: Duration? = nil) async throws -> Int {
        try await run(query, timeout: timeout).rowsAffected
    }

    /// Runs an `INSERT` and returns the `AUTO_INCREMENT` value it generated (for several rows, the
    /// first row's).
    ///
    /// - Parameters:
    ///   - query: The statement; interpolated values are bound parameters.
    ///   - timeout: As in ``query(_:timeout:)``.
    /// - Returns: The generated id; 0 when the table has no `AUTO_INCREMENT` column.
    /// - Throws: As ``query(_:timeout:)``.
    @discardableResult
    public func insert(_ query: SQLQuery, timeout: Duration? = nil) async throws -> UInt64 {
        try await run(query, timeout: timeout).lastInsertID
    }

    private func run(_ query: SQLQuery, timeout: Duration?) async throws -> MariaDBSession.Outcome {
        let start = monotonicNanoseconds()
        do {
            let outcome = try await withSession { session, _ in try session.run(query, timeout: timeout) }
            metrics.record(start: start, failed: false)
            return outcome
        } catch {
            metrics.record(start: start, failed: true)
            logger.debug("statement failed", metadata: ["mariadb.query": "\(query)", "error": "\(error)"])
            throw error
        }
    }

    /// Runs a statement and streams its rows: they are read from the server in batches as the
    /// consumer asks for them (unbuffered `mysql_stmt_fetch`), so a result of any size runs in
    /// bounded memory.
    ///
    /// ```swift
    /// for try await row in try await connection.stream("SELECT id, payload FROM events") {
    ///     try process(row.decode((Int, String).self))
    /// }
    /// ```
    ///
    /// Until the stream is finished or dropped the connection is busy: other statements on it fail
    /// with ``MariaDBError/Kind/connectionBusy``. Dropping the stream early interrupts the
    /// statement on the server (`KILL QUERY`).
    ///
    /// - Parameters:
    ///   - query: The statement.
    ///   - batchSize: Rows read per trip to the connection's thread.
    /// - Returns: The rows, as an `AsyncSequence`.
    /// - Throws: As ``query(_:timeout:)``, for errors before the first rows.
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
        _ body: sending @escaping (MariaDBSession, BlockingJobContext) throws -> Result
    ) async throws -> Result {
        let (canceller, usable) = (self.canceller, self.usable)
        return try await session.withResource { session, job in
            defer { if !session.isHealthy { usable.withLock { $0 = false } } }
            return try Self.cancellable(session, job, canceller) { try body(session, job) }
        }
    }

    /// Runs `operation` with `KILL QUERY` as the job's interrupt handler. A kill queued for an
    /// earlier statement has reached the server before `operation` starts; when the task was
    /// cancelled and the server interrupted the statement, the connection is checked with a
    /// ping and the error becomes `CancellationError`.
    static func cancellable<Result>(
        _ session: MariaDBSession,
        _ job: BlockingJobContext,
        _ canceller: MariaDBCanceller,
        _ operation: () throws -> Result
    ) throws -> Result {
        guard canceller.waitForPendingKills() else {
            session.markBroken()
            throw MariaDBError(kind: .connectionClosed, message: "a KILL QUERY for this connection did not finish; the connection is discarded")
        }
        try job.checkCancellation()
        do {
            return try job.withInterruptHandler({ canceller.cancel() }) { try operation() }
        } catch let error as MariaDBError where job.isCancelled && error.isQueryInterrupted {
            if !canceller.waitForPendingKills() { session.markBroken() }
            session.ping()
            throw CancellationError()
        }
    }

    /// Like ``withSession(_:)``, but runs even when the calling task is cancelled: for statements
    /// that end something (a transaction) and must not be skipped.
    func withSessionIgnoringCancellation<Result: Sendable>(
        _ body: @escaping @Sendable (MariaDBSession) throws -> Result
    ) async throws -> Result {
        let (session, usable, canceller) = (self.session, self.usable, self.canceller)
        return try await Task.detached {
            try await session.withResource { session in
                defer { if !session.isHealthy { usable.withLock { $0 = false } } }
                if !canceller.waitForPendingKills() { session.markBroken() }
                return try body(session)
            }
        }.value
    }

    /// Abandons a streamed statement in progress, ordered before any later statement; then runs
    /// `done`.
    func abandonStream(then done: @escaping @Sendable () -> Void) {
        let (canceller, usable) = (self.canceller, self.usable)
        session.withResourceDetached(
            { session in
                session.abandonStream {
                    canceller.cancel()
                    if !canceller.waitForPendingKills() { session.markBroken() }
                }
                if !session.isHealthy { usable.withLock { $0 = false } }
                done()
            },
            ifClosed: done
        )
    }

    // MARK: Legacy code

    /// Runs existing synchronous Connector/C code with the raw `MYSQL*`, on the connection's own
    /// thread.
    ///
    /// This is the migration escape hatch: legacy functions keep their signatures and keep calling
    /// Connector/C directly, but run where the connection lives instead of on a cooperative
    /// thread. Cancelling the task sends `KILL QUERY` for whatever statement the code is running.
    ///
    /// ```swift
    /// let total = try await connection.withRawConnection { mysql in
    ///     LegacyInventory.totalStock(mysql)   // calls mysql_query itself
    /// }
    /// ```
    ///
    /// - Parameter body: Synchronous code using the handle. It must not keep the handle, close it,
    ///   change its options, or leave a transaction or a result pending.
    /// - Returns: What `body` returns.
    public func withRawConnection<Result>(
        _ body: sending @escaping (UnsafeMutablePointer<MYSQL>) throws -> sending Result
    ) async throws -> sending Result {
        let (canceller, usable) = (self.canceller, self.usable)
        return try await session.withResource { session, job in
            defer {
                // Legacy code reports a broken connection only through its own error handling.
                let number = mysql_errno(session.mysql)
                if MariaDBSession.kind(ofErrorNumber: number) == .connectionClosed { session.markBroken() }
                if !session.isHealthy { usable.withLock { $0 = false } }
            }
            if !canceller.waitForPendingKills() { session.markBroken() }
            return try job.withInterruptHandler({ canceller.cancel() }) { try body(session.mysql) }
        }
    }

    // MARK: Health

    /// `false` once the connection broke (or was closed): a pool discards such connections. Costs
    /// no round trip.
    public var isUsable: Bool {
        usable.current
    }

    /// Whether the server answers a ping on this connection.
    public func checkHealth() async -> Bool {
        guard isUsable else { return false }
        let alive = (try? await withSession { session, _ in session.ping() }) ?? false
        if !alive { usable.withLock { $0 = false } }
        return alive
    }

    /// Closes the connection and stops its thread. Statements queued before finish first.
    public func close() async {
        usable.withLock { $0 = false }
        try? await session.close { session in session.close() }
        await executor.shutdownGracefully()
        logger.debug("closed")
    }

    // MARK: Transactions

    /// How concurrent transactions see each other's changes.
    public enum IsolationLevel: String, Sendable {
        /// Sees uncommitted changes of other transactions.
        case readUncommitted = "READ UNCOMMITTED"
        /// Each statement sees what was committed before it started.
        case readCommitted = "READ COMMITTED"
        /// InnoDB's default: one snapshot for the whole transaction.
        case repeatableRead = "REPEATABLE READ"
        /// Like repeatable read, with every plain read taking shared locks.
        case serializable = "SERIALIZABLE"
    }

    /// Runs `body` in a transaction: commits when it returns, rolls back when it throws or when
    /// the task is cancelled. Nested calls use savepoints, so an inner failure rolls back only the
    /// inner part.
    ///
    /// MariaDB commits implicitly before DDL (`CREATE`, `ALTER`, `DROP`…): keep such statements
    /// out of transactions.
    ///
    /// - Parameters:
    ///   - isolation: The isolation level; the session's when `nil`. Ignored when nested.
    ///   - readOnly: Starts a read-only transaction. Ignored when nested.
    ///   - body: The work; it receives this connection.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws (after the rollback); `CancellationError` when the task was
    ///   cancelled; ``MariaDBError`` when `COMMIT` fails.
    @discardableResult
    public func withTransaction<Result: Sendable>(
        isolation: IsolationLevel? = nil,
        readOnly: Bool = false,
        _ body: (MariaDBConnection) async throws -> Result
    ) async throws -> Result {
        var begin: [String] = []
        if let isolation { begin.append("SET TRANSACTION ISOLATION LEVEL \(isolation.rawValue)") }
        begin.append(readOnly ? "START TRANSACTION READ ONLY" : "START TRANSACTION")
        return try await transactions.run(
            begin: begin,
            execute: runControl,
            executeIgnoringCancellation: rollBack
        ) {
            try await body(self)
        }
    }

    private func runControl(_ sql: String) async throws {
        try await withSession { session, _ in try session.runText(sql) }
    }

    /// Runs rollback statements even when the task is cancelled: they run in a task of their
    /// own, which the caller's cancellation does not reach.
    private func rollBack(_ statements: [String]) async {
        do {
            try await withSessionIgnoringCancellation { session in
                for sql in statements { try session.runText(sql) }
            }
        } catch {
            logger.warning("rollback failed", metadata: ["error": "\(error)"])
        }
    }
}
