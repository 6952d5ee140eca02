public import CMariaDB
public import Logging
public import Metrics
public import ServiceLifecycle
import SyncBridge
public import SyncBridgeSQL

/// MariaDB/MySQL through a pool of connections, each on its own thread: the entry point for
/// applications. The same surface as `PostgresClient`: statements with bound values, typed rows,
/// streaming, transactions, and legacy Connector/C code on a pooled connection's thread.
///
/// ```swift
/// let client = MariaDBClient(configuration: try MariaDBConfiguration(url: "mariadb://app:secret@db/shop"))
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await client.run() }   // upkeep; or add `client` to a ServiceGroup
///     let rows = try await client.query("SELECT name FROM products WHERE id = \(id)")
///     try await client.withTransaction { connection in
///         try await connection.execute("UPDATE stock SET quantity = quantity - \(n) WHERE sku = \(sku)")
///         try await connection.execute("INSERT INTO orders (sku, quantity) VALUES (\(sku), \(n))")
///     }
///     group.cancelAll()
/// }
/// ```
public final class MariaDBClient: Sendable, Service {
    /// The pool of connections.
    public let pool: ConnectionPool<MariaDBConnection>
    /// Where and how the client connects (its `description` leaves the password out).
    public let configuration: MariaDBConfiguration
    private let lanes: StatementLanes<MariaDBConnection>

    /// Creates a client; connections are opened when needed.
    ///
    /// - Parameters:
    ///   - configuration: Where and how to connect.
    ///   - poolConfiguration: The pool's sizes and timeouts.
    ///   - name: Names the pool in logs, metrics and errors.
    ///   - logger: Receives pool and connection events; the password never appears.
    ///   - metricsFactory: Receives the pool's and the statements' metrics.
    public init(
        configuration: MariaDBConfiguration,
        poolConfiguration: ConnectionPoolConfiguration = .init(),
        name: String = "mariadb",
        logger: Logger = Logger(label: "SyncBridge.MariaDB"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.configuration = configuration
        pool = ConnectionPool(
            name: name,
            configuration: poolConfiguration,
            logger: logger,
            metricsFactory: metricsFactory
        ) {
            try await MariaDBConnection.connect(configuration: configuration, logger: logger, metricsFactory: metricsFactory)
        }
        lanes = StatementLanes(pool: pool)
    }

    /// Keeps the pool in shape until cancelled or until the service group shuts down; then shuts
    /// the pool down.
    public func run() async throws {
        try await pool.run()
    }

    /// Shuts the pool down: waits for leased connections, then closes every connection.
    public func shutdown() async {
        await pool.shutdown()
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
        _ body: (MariaDBConnection) async throws -> sending Result
    ) async throws -> sending Result {
        try await pool.withConnection(fileID: fileID, line: line, body)
    }

    /// Runs a statement on a pooled connection and returns its rows (see
    /// ``MariaDBConnection/query(_:timeout:)``).
    ///
    /// When every connection is busy, the statement queues on the least loaded connection's
    /// thread rather than waiting for a connection of its own. For several statements that must
    /// share a session, use ``withConnection(fileID:line:_:)`` or ``withTransaction(isolation:readOnly:fileID:line:_:)``.
    @discardableResult
    public func query(
        _ query: SQLQuery,
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> [SQLRow] {
        try await lanes.run(at: CallSite(fileID: fileID, line: line)) { try await $0.query(query, timeout: timeout) }
    }

    /// Runs a statement on a pooled connection and returns the number of rows it matched (see
    /// ``MariaDBConnection/execute(_:timeout:)``).
    @discardableResult
    public func execute(
        _ query: SQLQuery,
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> Int {
        try await lanes.run(at: CallSite(fileID: fileID, line: line)) { try await $0.execute(query, timeout: timeout) }
    }

    /// Runs an `INSERT` on a pooled connection and returns the `AUTO_INCREMENT` value it
    /// generated (see ``MariaDBConnection/insert(_:timeout:)``).
    @discardableResult
    public func insert(
        _ query: SQLQuery,
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> UInt64 {
        try await lanes.run(at: CallSite(fileID: fileID, line: line)) { try await $0.insert(query, timeout: timeout) }
    }

    /// Streams a statement's rows from a pooled connection, in batches as they are consumed (see
    /// ``MariaDBConnection/stream(_:batchSize:)``). The connection goes back to the pool when the
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

    /// Runs `body` in a transaction on one pooled connection (see
    /// ``MariaDBConnection/withTransaction(isolation:readOnly:_:)``).
    @discardableResult
    public func withTransaction<Result: Sendable>(
        isolation: MariaDBConnection.IsolationLevel? = nil,
        readOnly: Bool = false,
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: (MariaDBConnection) async throws -> Result
    ) async throws -> Result {
        try await pool.withConnection(fileID: fileID, line: line) { connection in
            try await connection.withTransaction(isolation: isolation, readOnly: readOnly, body)
        }
    }

    /// Runs legacy synchronous Connector/C code with a pooled connection's raw `MYSQL*`, on that
    /// connection's own thread (see ``MariaDBConnection/withRawConnection(_:)``).
    public func withRawConnection<Result>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: sending @escaping (UnsafeMutablePointer<MYSQL>) throws -> sending Result
    ) async throws -> sending Result {
        let lease = try await pool.leaseConnection(at: CallSite(fileID: fileID, line: line))
        defer { pool.release(lease) }
        return try await lease.connection.withRawConnection(body)
    }
}
