public import Logging
public import Metrics
public import ServiceLifecycle
import SyncBridge
public import SyncBridgeSQL

/// PostgreSQL through a pool of connections, each on its own thread: the entry point for
/// applications. It also streams results, listens for notifications and runs legacy libpq code.
///
/// ```swift
/// let client = PostgresClient(connectionString: "postgres://app@db/app")
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await client.run() }   // upkeep; or add `client` to a ServiceGroup
///     let rows = try await client.query("SELECT name FROM users WHERE id = \(id)")
///     try await client.withTransaction { connection in
///         try await connection.execute("UPDATE accounts SET balance = balance - \(amount) WHERE id = \(from)")
///         try await connection.execute("UPDATE accounts SET balance = balance + \(amount) WHERE id = \(to)")
///     }
///     group.cancelAll()
/// }
/// ```
public final class PostgresClient: Sendable, Service {
    /// The pool of connections.
    public let pool: ConnectionPool<PostgresConnection>
    private let listener: PostgresListener
    private let lanes: StatementLanes<PostgresConnection>

    /// Creates a client; connections are opened when needed.
    ///
    /// - Parameters:
    ///   - connectionString: A libpq connection string or `postgres://` URL (see
    ///     ``PostgresConnection/connect(_:logger:)``).
    ///   - configuration: The pool's sizes and timeouts.
    ///   - name: Names the pool in logs, metrics and errors.
    ///   - defaultStatementTimeout: Every connection's `statement_timeout`: the server cancels
    ///     statements that run longer. `nil` keeps the server's default.
    ///   - logger: Receives pool and connection events; the password never appears.
    ///   - metricsFactory: Receives the pool's and the statements' metrics.
    public init(
        connectionString: String,
        configuration: ConnectionPoolConfiguration = .init(),
        name: String = "postgres",
        defaultStatementTimeout: Duration? = nil,
        logger: Logger = Logger(label: "SyncBridge.Postgres"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        pool = ConnectionPool(
            name: name,
            configuration: configuration,
            logger: logger,
            metricsFactory: metricsFactory
        ) {
            try await PostgresConnection.connect(
                connectionString,
                statementTimeout: defaultStatementTimeout,
                logger: logger,
                metricsFactory: metricsFactory
            )
        }
        lanes = StatementLanes(pool: pool)
        listener = PostgresListener(logger: logger) {
            try await PostgresConnection.connect(connectionString, logger: logger, metricsFactory: metricsFactory)
        }
    }

    /// Keeps the pool in shape until cancelled or until the service group shuts down; then shuts
    /// the pool down.
    public func run() async throws {
        try await pool.run()
    }

    /// Shuts the pool down (waits for leased connections, then closes every connection) and
    /// stops listening: every notification sequence ends.
    public func shutdown() async {
        await listener.shutdown()
        await pool.shutdown()
    }

    // MARK: LISTEN/NOTIFY

    /// The notifications sent on `channel`, as they arrive.
    ///
    /// All of a client's listeners share one dedicated connection (not one of the pool's), opened
    /// on first use. When that connection breaks, the client reconnects and listens again;
    /// notifications sent in between are lost, as PostgreSQL keeps none for absent listeners. The
    /// sequence ends when the client shuts down; stop iterating to unsubscribe.
    ///
    /// ```swift
    /// for await notification in client.notifications(on: "orders") {
    ///     print("order \(notification.payload) changed")
    /// }
    /// ```
    ///
    /// Listening starts in the background: a notification sent right after this call may be
    /// missed. Use ``listen(on:)`` when the first notifications matter.
    public func notifications(on channel: String) -> AsyncStream<PostgresNotification> {
        listener.subscribe(channel)
    }

    /// The notifications sent on `channel`, returned once the server delivers them to this
    /// client: every notification sent (committed) after this returns reaches the sequence, as
    /// long as the listening connection does not break.
    ///
    /// ```swift
    /// let changes = await client.listen(on: "orders")
    /// try await startProducers()            // nothing they announce is missed
    /// for await change in changes { … }
    /// ```
    ///
    /// Otherwise as ``notifications(on:)``. Returns early, without waiting, when the client shuts
    /// down (the sequence is then empty) or the task is cancelled.
    public func listen(on channel: String) async -> AsyncStream<PostgresNotification> {
        await listener.subscribeWhenListening(channel)
    }

    /// Sends a notification on `channel` (`pg_notify`), delivered when the sending transaction
    /// commits (at once outside a transaction).
    public func notify(channel: String, payload: String = "") async throws {
        try await execute("SELECT pg_notify(\(channel), \(payload))")
    }

    /// Leases one connection for several statements.
    ///
    /// - Parameter body: The work; the connection is this task's until `body` returns.
    /// - Returns: What `body` returns.
    /// - Throws: ``ConnectionPoolError`` when no connection is free within the acquire timeout;
    ///   what `body` throws.
    public func withConnection<Result>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: (PostgresConnection) async throws -> sending Result
    ) async throws -> sending Result {
        try await pool.withConnection(fileID: fileID, line: line, body)
    }

    /// Runs a statement on a pooled connection and returns its rows (see
    /// ``PostgresConnection/query(_:timeout:)``).
    ///
    /// When every connection is busy, the statement queues on the least loaded connection's
    /// thread rather than waiting for a connection of its own, so connections run statements back
    /// to back under load. For several statements that must share a session, use
    /// ``withConnection(fileID:line:_:)`` or ``withTransaction(isolation:readOnly:fileID:line:_:)``.
    @discardableResult
    public func query(
        _ query: SQLQuery,
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> [SQLRow] {
        try await lanes.run(at: CallSite(fileID: fileID, line: line)) { try await $0.query(query, timeout: timeout) }
    }

    /// Streams a statement's rows from a pooled connection, in batches as they are consumed (see
    /// ``PostgresConnection/stream(_:batchSize:)``). The connection goes back to the pool when the
    /// rows are exhausted or the stream is dropped.
    public func stream(
        _ query: SQLQuery,
        batchSize: Int = 1000,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> SQLRowStream {
        let lease = try await pool.leaseConnection(at: CallSite(fileID: fileID, line: line))
        let pool = self.pool
        return try await lease.connection.stream(query, batchSize: batchSize) { pool.release(lease) }
    }

    /// Bulk-loads data with `COPY … FROM STDIN` on a pooled connection (see
    /// ``PostgresConnection/copyFrom(_:data:)``).
    @discardableResult
    public func copyFrom<Data: AsyncSequence>(
        _ statement: SQLQuery,
        data: Data,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> Int
    where Data.Element == [UInt8] {
        let lease = try await pool.leaseConnection(at: CallSite(fileID: fileID, line: line))
        defer { pool.release(lease) }
        return try await lease.connection.copyFrom(statement, data: data)
    }

    /// Bulk-loads rows with `COPY … FROM STDIN` on a pooled connection (see
    /// ``PostgresConnection/copyFrom(_:rows:)``).
    @discardableResult
    public func copyFrom(
        _ statement: SQLQuery,
        rows: some Sequence<[SQLValue]>,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> Int {
        let lease = try await pool.leaseConnection(at: CallSite(fileID: fileID, line: line))
        defer { pool.release(lease) }
        return try await lease.connection.copyFrom(statement, rows: rows)
    }

    /// Exports data with `COPY … TO STDOUT` from a pooled connection, which goes back to the pool
    /// when the data is exhausted or the sequence is dropped (see
    /// ``PostgresConnection/copyTo(_:maximumBatchBytes:)``).
    public func copyTo(
        _ statement: SQLQuery,
        maximumBatchBytes: Int = 1 << 20,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> SQLBatchStream<[UInt8]> {
        let lease = try await pool.leaseConnection(at: CallSite(fileID: fileID, line: line))
        let pool = self.pool
        return try await lease.connection.copyTo(statement, maximumBatchBytes: maximumBatchBytes) { pool.release(lease) }
    }

    /// Runs a statement on a pooled connection and returns the affected row count (see
    /// ``PostgresConnection/execute(_:timeout:)``).
    @discardableResult
    public func execute(
        _ query: SQLQuery,
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> Int {
        try await lanes.run(at: CallSite(fileID: fileID, line: line)) { try await $0.execute(query, timeout: timeout) }
    }

    /// Runs `body` in a transaction on one pooled connection (see
    /// ``PostgresConnection/withTransaction(isolation:readOnly:_:)``).
    @discardableResult
    public func withTransaction<Result: Sendable>(
        isolation: PostgresConnection.IsolationLevel? = nil,
        readOnly: Bool = false,
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await pool.withConnection(fileID: fileID, line: line) { connection in
            try await connection.withTransaction(isolation: isolation, readOnly: readOnly, body)
        }
    }

    /// Runs legacy synchronous libpq code with a pooled connection's raw `PGconn*`, on that
    /// connection's own thread (see ``PostgresConnection/withRawConnection(_:)``).
    public func withRawConnection<Result>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: sending @escaping (OpaquePointer) throws -> sending Result
    ) async throws -> sending Result {
        let lease = try await pool.leaseConnection(at: CallSite(fileID: fileID, line: line))
        defer { pool.release(lease) }
        return try await lease.connection.withRawConnection(body)
    }
}
