import CLibPQ
public import Logging
public import Metrics
import SyncBridge
public import SyncBridgeSQL

/// One PostgreSQL connection over libpq, living on its own dedicated thread.
///
/// Every libpq call on the connection runs on its ``SQLConnection/executor``'s thread, never on
/// Swift's cooperative pool; callers suspend meanwhile. Statements run one at a time in submission
/// order, prepared on first use. Cancelling the task of a running statement cancels it **on the
/// server** (`PQcancel`) and the connection stays usable.
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
/// The statements, streaming, transactions and `withRawConnection` (which hands legacy code the
/// `PGconn*`) are ``SQLConnection``'s; PostgreSQL adds COPY (``SQLConnection/copyFrom(_:data:)``,
/// ``SQLConnection/copyTo(_:maximumBatchBytes:)``).
public typealias PostgresConnection = SQLConnection<PostgresSession>

extension SQLConnection where Session == PostgresSession {
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
    ///   - metricsFactory: Receives statement metrics (`db.client.operation.duration`).
    /// - Throws: ``PostgresError`` with kind ``PostgresError/Kind/connectionFailed`` naming the host
    ///   that failed and libpq's reason.
    public static func connect(
        _ connectionString: String,
        statementTimeout: Duration? = nil,
        logger: Logger = Logger(label: "SyncBridge.Postgres"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) async throws -> PostgresConnection {
        let configuration = PostgresConfiguration(
            connectionString: connectionString,
            statementTimeout: statementTimeout
        )
        _ = try PostgresConfiguration.redactedDescription(of: connectionString)
        return try await connect(configuration: configuration, logger: logger, metricsFactory: metricsFactory)
    }

    /// Waits up to `timeout` for notifications on the channels this connection listens to.
    func pollNotifications(timeout: Duration) async throws -> [PostgresNotification] {
        let milliseconds = Int32(clamping: timeout.millisecondCount)
        return try await withSession { session in
            try session.pollNotifications(timeoutMilliseconds: milliseconds)
        }
    }

    /// Abandons a `COPY` in progress, ordered before any later statement; then runs `done`.
    func abandonCopy(then done: @escaping @Sendable () -> Void) {
        withSessionDetached({ session, canceller in session.abandonCopy { canceller.cancel() } }, then: done)
    }
}
