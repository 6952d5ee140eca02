public import Logging
public import Metrics
import SyncBridge
public import SyncBridgeSQL

/// PostgreSQL through a pool of connections, each on its own thread: the entry point for
/// applications. It also streams results, listens for notifications, bulk-loads with COPY and runs
/// legacy libpq code.
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
///
/// The pool, statements, streaming, transactions and `withRawConnection` are ``SQLClient``'s;
/// PostgreSQL adds LISTEN/NOTIFY and COPY.
public typealias PostgresClient = SQLClient<PostgresSession>

extension SQLClient where Session == PostgresSession {
    /// Creates a client; connections are opened when needed.
    ///
    /// - Parameters:
    ///   - connectionString: A libpq connection string or `postgres://` URL (see
    ///     ``SQLConnection/connect(_:statementTimeout:logger:metricsFactory:)``).
    ///   - configuration: The pool's sizes and timeouts.
    ///   - ioThreads: I/O threads that run single statements without blocking, a few threads
    ///     for many connections (see ``SQLIOThreads``); `nil` (the default) for
    ///     ``SQLIOThreads/processDefault``: the shared I/O threads (``SQLIOThreads/shared``)
    ///     unless `SYNCBRIDGE_IO_THREADS=0`.
    ///   - name: Names the pool in logs, metrics and errors.
    ///   - defaultStatementTimeout: Every connection's `statement_timeout`: the server cancels
    ///     statements that run longer. `nil` keeps the server's default.
    ///   - logger: Receives pool and connection events; the password never appears.
    ///   - metricsFactory: Receives the pool's and the statements' metrics.
    public convenience init(
        connectionString: String,
        configuration: ConnectionPoolConfiguration = .init(),
        ioThreads: SQLIOThreads? = nil,
        name: String = "postgres",
        defaultStatementTimeout: Duration? = nil,
        logger: Logger = Logger(label: "SyncBridge.Postgres"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.init(
            configuration: PostgresConfiguration(
                connectionString: connectionString,
                statementTimeout: defaultStatementTimeout
            ),
            poolConfiguration: configuration,
            ioThreads: ioThreads,
            name: name,
            logger: logger,
            metricsFactory: metricsFactory
        )
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
        clientExtension.subscribe(channel)
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
        await clientExtension.subscribeWhenListening(channel)
    }

    /// Sends a notification on `channel` (`pg_notify`), delivered when the sending transaction
    /// commits (at once outside a transaction).
    public func notify(channel: String, payload: String = "") async throws {
        try await execute("SELECT pg_notify(\(channel), \(payload))")
    }

    // MARK: COPY

    /// Bulk-loads data with `COPY … FROM STDIN` on a pooled connection (see
    /// ``SQLConnection/copyFrom(_:data:)``).
    @discardableResult
    public func copyFrom<Data: AsyncSequence>(
        _ statement: SQLQuery,
        data: Data,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> Int
    where Data.Element == [UInt8] {
        try await withLeasedConnection(at: CallSite(fileID: fileID, line: line)) { connection in
            try await connection.copyFrom(statement, data: data)
        }
    }

    /// Bulk-loads rows with `COPY … FROM STDIN` on a pooled connection (see
    /// ``SQLConnection/copyFrom(_:rows:)``).
    @discardableResult
    public func copyFrom(
        _ statement: SQLQuery,
        rows: some Sequence<[SQLValue]>,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> Int {
        try await withLeasedConnection(at: CallSite(fileID: fileID, line: line)) { connection in
            try await connection.copyFrom(statement, rows: rows)
        }
    }

    /// Exports data with `COPY … TO STDOUT` from a pooled connection, which goes back to the pool
    /// when the data is exhausted or the sequence is dropped (see
    /// ``SQLConnection/copyTo(_:maximumBatchBytes:)``).
    public func copyTo(
        _ statement: SQLQuery,
        maximumBatchBytes: Int = 1 << 20,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> SQLBatchStream<[UInt8]> {
        try await withLease(at: CallSite(fileID: fileID, line: line)) { connection, release in
            try await connection.copyTo(statement, maximumBatchBytes: maximumBatchBytes, onFinish: release)
        }
    }
}
