import CMariaDB
public import Logging
public import Metrics
import SyncBridge
public import SyncBridgeSQL

/// One MariaDB/MySQL connection over Connector/C, living on its own dedicated thread.
///
/// Every Connector/C call on the connection runs on its ``SQLConnection/executor``'s thread, never
/// on Swift's cooperative pool; callers suspend meanwhile. Statements run one at a time in
/// submission order, as prepared statements over the binary protocol: interpolated values are
/// bound, never spliced into the SQL. Cancelling the task of a running statement sends
/// `KILL QUERY` from a side connection, so the server stops working on it, and the connection
/// stays usable.
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
/// The statements, streaming, transactions and `withRawConnection` (which hands legacy code the
/// `MYSQL*`) are ``SQLConnection``'s; MariaDB adds ``SQLDatabase/insert(_:timeout:fileID:line:)``
/// and the server's id of the connection.
public typealias MariaDBConnection = SQLConnection<MariaDBSession>

extension SQLConnection where Session == MariaDBSession {
    /// Connects to the server a `mariadb://` or `mysql://` URL names (see
    /// ``MariaDBConfiguration/init(url:)``).
    ///
    /// - Throws: `MariaDBConfigurationError` for a URL that cannot be used; ``MariaDBError`` with
    ///   kind ``MariaDBError/Kind/connectionFailed`` naming the server and Connector/C's reason.
    public static func connect(
        url: String,
        logger: Logger = Logger(label: "SyncBridge.MariaDB"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) async throws -> MariaDBConnection {
        try await connect(configuration: MariaDBConfiguration(url: url), logger: logger, metricsFactory: metricsFactory)
    }

    /// The server's id of this connection (`CONNECTION_ID()`), as `SHOW PROCESSLIST` and `KILL`
    /// name it.
    public var serverConnectionID: UInt {
        canceller.threadID
    }
}

extension SQLDatabase where Session == MariaDBSession {
    /// Runs an `INSERT` and returns the `AUTO_INCREMENT` value it generated (for several rows, the
    /// first row's).
    ///
    /// - Parameters:
    ///   - fileID: Where the call is, for reports; leave the default.
    ///   - line: Where the call is, for reports; leave the default.
    ///   - query: The statement; interpolated values are bound parameters.
    ///   - timeout: As in ``SQLDatabase/query(_:timeout:fileID:line:)``.
    /// - Returns: The generated id; 0 when the table has no `AUTO_INCREMENT` column.
    /// - Throws: As ``SQLDatabase/query(_:timeout:fileID:line:)``.
    @discardableResult
    public func insert(
        _ query: SQLQuery,
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> UInt64 {
        try await run(query, timeout: timeout, at: CallSite(fileID: fileID, line: line)).lastInsertID ?? 0
    }
}
