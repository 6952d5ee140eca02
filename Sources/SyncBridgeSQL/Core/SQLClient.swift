public import Logging
public import Metrics
public import ServiceLifecycle
public import SyncBridge
import Tracing

/// A database through a pool of connections, each on its own thread: the entry point for
/// applications.
///
/// `PostgresClient` and `MariaDBClient` are this class over SyncBridge's two sessions; a session
/// of your own (see ``SQLSession``) gets the same client.
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
/// Single statements (``SQLDatabase/query(_:timeout:fileID:line:)``,
/// ``SQLDatabase/execute(_:timeout:fileID:line:)``) need no connection of their own: when every
/// connection is busy, a statement queues on the least loaded connection's thread rather than
/// waiting for a connection, so connections run statements back to back under load. For several
/// statements that must share a session, use ``withConnection(fileID:line:_:)`` or a transaction.
public final class SQLClient<Session: SQLSession>: Sendable, Service, SQLDatabase {
    /// The connections' type.
    public typealias Connection = SQLConnection<Session>

    /// The pool of connections.
    public let pool: ConnectionPool<Connection>
    /// Where and how the client connects (its `description` leaves the password out).
    public let configuration: Session.Configuration
    /// What the database adds to its clients (PostgreSQL: the notification listener).
    package let clientExtension: Session.ClientExtension

    /// Creates a client; connections are opened when needed.
    ///
    /// - Parameters:
    ///   - configuration: Where and how to connect.
    ///   - poolConfiguration: The pool's sizes and timeouts.
    ///   - ioThreads: I/O threads that run the connections' single statements without blocking
    ///     (see ``SQLIOThreads``); `nil` (the default) for ``SQLIOThreads/processDefault``: the
    ///     shared I/O threads (``SQLIOThreads/shared``) unless `SYNCBRIDGE_IO_THREADS=0`.
    ///   - name: Names the pool in logs, metrics and errors; the database's name by default.
    ///   - cancellationGracePeriod: How long a cancelled or timed-out statement may wait for the
    ///     server to answer before its caller gets the error anyway and the connection is
    ///     abandoned (see ``SQLConnection/connect(configuration:ioThreads:cancellationGracePeriod:logger:metricsFactory:)``).
    ///   - logger: Receives pool and connection events; the password never appears.
    ///   - metricsFactory: Receives the pool's and the statements' metrics.
    public init(
        configuration: Session.Configuration,
        poolConfiguration: ConnectionPoolConfiguration = .init(),
        ioThreads: SQLIOThreads? = nil,
        name: String = Session.databaseName,
        cancellationGracePeriod: Duration = .seconds(2),
        logger: Logger = Logger(label: "SyncBridge.\(Session.databaseName)"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.configuration = configuration
        pool = ConnectionPool(
            name: name,
            configuration: poolConfiguration,
            logger: logger,
            metricsFactory: metricsFactory
        ) {
            try await Connection.connect(
                configuration: configuration,
                ioThreads: ioThreads,
                cancellationGracePeriod: cancellationGracePeriod,
                logger: logger,
                metricsFactory: metricsFactory
            )
        }
        clientExtension = Session.ClientExtension(
            configuration: configuration,
            logger: logger,
            metricsFactory: metricsFactory
        )
    }

    /// Keeps the pool in shape until cancelled or until the service group shuts down; then shuts
    /// the client down.
    public func run() async throws {
        try await pool.run()
        await clientExtension.shutdown()
    }

    /// Shuts the client down: stops what the database added (PostgreSQL's listeners end), waits
    /// for leased connections, then closes every connection.
    public func shutdown() async {
        await clientExtension.shutdown()
        await pool.shutdown()
    }

    /// Leases one connection for several statements.
    ///
    /// - Parameters:
    ///   - fileID: Where the call is, for reports; leave the default.
    ///   - line: Where the call is, for reports; leave the default.
    ///   - body: The work; the connection is this task's until `body` returns.
    /// - Returns: What `body` returns.
    /// - Throws: ``ConnectionPoolError`` when no connection is free within the acquire timeout;
    ///   what `body` throws.
    public func withConnection<Result>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: (Connection) async throws -> sending Result
    ) async throws -> sending Result {
        try await pool.withConnection(fileID: fileID, line: line, body)
    }

    /// Runs a statement on a pooled connection (see ``SQLConnection/run(_:timeout:at:)``): a
    /// connection of its own while the pool has one to lease, otherwise the queue of the least
    /// loaded busy connection.
    public func run(_ query: SQLQuery, timeout: Duration?, at callSite: CallSite) async throws -> SQLOutcome {
        guard let tracer = SQLTracing.tracer else {
            return try await pool.runStatement(at: callSite) {
                try await $0.runUntraced(query, timeout: timeout, at: callSite)
            }
        }
        return try await SQLTracing.withSpan(
            tracer,
            Session.self,
            query: query,
            name: Session.tracingSystemName,
            target: nil
        ) {
            span in
            let waitStart = DefaultTracerClock.now
            return try await pool.runStatement(at: callSite) { connection in
                SQLTracing.recordPoolWait(tracer, parent: span, from: waitStart, pool: pool.name)
                SQLTracing.describe(span, target: connection.tracingTarget)
                return try await connection.runUntraced(query, timeout: timeout, at: callSite)
            }
        }
    }

    /// Streams a statement's rows from a pooled connection, which goes back to the pool when the
    /// rows are exhausted or the stream is dropped (see ``SQLConnection/stream(_:batchSize:at:)``).
    public func stream(_ query: SQLQuery, batchSize: Int, at callSite: CallSite) async throws -> SQLRowStream {
        guard let tracer = SQLTracing.tracer else {
            return try await withLease(at: callSite) { connection, release in
                try await connection.stream(query, batchSize: batchSize, onFinish: release)
            }
        }
        let span = SQLTracing.startSpan(
            tracer,
            Session.self,
            query: query,
            name: Session.tracingSystemName,
            target: nil
        )
        let waitStart = DefaultTracerClock.now
        // Once the connection streams, it records the stream's errors and ends the span.
        let streaming = Locked(false)
        do {
            return try await ServiceContext.$current.withValue(span.context) {
                try await withLease(at: callSite) { connection, release in
                    SQLTracing.recordPoolWait(tracer, parent: span, from: waitStart, pool: pool.name)
                    SQLTracing.describe(span, target: connection.tracingTarget)
                    streaming.withLock { $0 = true }
                    return try await connection.stream(query, batchSize: batchSize, span: span, onFinish: release)
                }
            }
        } catch {
            if !streaming.current {
                SQLTracing.record(error, Session.self, in: span)
                span.end()
            }
            throw error
        }
    }

    /// Runs `body` in a transaction on one pooled connection (see
    /// ``SQLConnection/withTransaction(isolation:readOnly:at:_:)``).
    public func withTransaction<Result: Sendable>(
        isolation: SQLIsolationLevel?,
        readOnly: Bool,
        at callSite: CallSite,
        _ body: (Connection) async throws -> Result
    ) async throws -> Result {
        guard let tracer = SQLTracing.tracer else {
            return try await pool.withConnection(at: callSite) { connection in
                try await connection.withTransactionUntraced(isolation: isolation, readOnly: readOnly, body)
            }
        }
        return try await SQLTracing.withSpan(tracer, Session.self, query: nil, name: "transaction", target: nil) {
            span in
            let waitStart = DefaultTracerClock.now
            return try await pool.withConnection(at: callSite) { connection in
                SQLTracing.recordPoolWait(tracer, parent: span, from: waitStart, pool: pool.name)
                SQLTracing.describe(span, target: connection.tracingTarget)
                return try await connection.withTransactionUntraced(isolation: isolation, readOnly: readOnly, body)
            }
        }
    }

    /// Runs legacy synchronous C client code with a pooled connection's raw handle, on that
    /// connection's own thread (see ``SQLConnection/withRawConnection(_:)``).
    public func withRawConnection<Result>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: sending @escaping (Session.RawHandle) throws -> sending Result
    ) async throws -> sending Result {
        guard let tracer = SQLTracing.tracer else {
            let callSite = CallSite(fileID: fileID, line: line)
            let lease = try await pool.leaseConnection(at: callSite)
            defer { pool.release(lease) }
            return try await lease.connection.withRawConnectionUntraced(at: callSite, body)
        }
        // The closure hands `body` on once, to the untraced call; nothing else uses it.
        nonisolated(unsafe) let body = body
        let result = try await SQLTracing.withSpan(
            tracer,
            Session.self,
            query: nil,
            name: "withRawConnection",
            target: nil
        ) { span in
            let waitStart = DefaultTracerClock.now
            let callSite = CallSite(fileID: fileID, line: line)
            let lease = try await pool.leaseConnection(at: callSite)
            defer { pool.release(lease) }
            SQLTracing.recordPoolWait(tracer, parent: span, from: waitStart, pool: pool.name)
            SQLTracing.describe(span, target: lease.connection.tracingTarget)
            return Sent(try await lease.connection.withRawConnectionUntraced(at: callSite, body))
        }
        return result.value
    }

    /// Leases a connection for work that outlives the call (a stream, a COPY export): `body`
    /// receives the connection and the release, which it must arrange to run exactly once; when
    /// `body` throws, the lease is released here.
    package func withLease<Result>(
        at callSite: CallSite,
        _ body: (Connection, _ release: @escaping @Sendable () -> Void) async throws -> Result
    ) async throws -> Result {
        let lease = try await pool.leaseConnection(at: callSite)
        let pool = self.pool
        let release = RunOnce { pool.release(lease) }
        do {
            return try await body(lease.connection, { release() })
        } catch {
            release()
            throw error
        }
    }

    /// Runs `body` with a pooled connection for the duration of the call.
    package func withLeasedConnection<Result>(
        at callSite: CallSite,
        _ body: (Connection) async throws -> Result
    ) async throws -> Result {
        let lease = try await pool.leaseConnection(at: callSite)
        defer { pool.release(lease) }
        return try await body(lease.connection)
    }
}
