import CLibPQ
public import SyncBridgeSQL

extension PostgresSession: SQLSession {
    /// `postgres`: threads are named `sb-postgres-N`, metrics `syncbridge.postgres.*`.
    public static var databaseName: String { "postgres" }

    /// Connects with libpq (blocking) and sets the session up: UTF-8, UTC, ISO dates, the default
    /// statement timeout.
    ///
    /// - Throws: ``PostgresError`` with kind ``PostgresError/Kind/connectionFailed`` naming the
    ///   host that failed and libpq's reason.
    public static func open(_ configuration: PostgresConfiguration) throws -> PostgresSession {
        try open(configuration.connectionString, statementTimeout: configuration.statementTimeout)
    }

    /// A ``PostgresCanceller`` over this connection's `PGcancel`.
    public func makeCanceller(configuration: PostgresConfiguration) -> PostgresCanceller {
        PostgresCanceller(PQgetCancel(connection))
    }

    /// The `PGconn*`.
    public var rawHandle: OpaquePointer { connection }

    /// Runs `query` with its bound parameters, prepared on first use; past `timeout`, the
    /// statement is cancelled on the server and fails with ``PostgresError/Kind/timedOut``.
    public func run(_ query: SQLQuery, timeout: SQLTimeout?) throws -> SQLOutcome {
        try run(query, deadline: timeout?.deadline)
    }

    /// Runs `sql` through the simple protocol.
    public func runControl(_ sql: String) throws {
        try runSimple(sql)
    }

    /// `SELECT 1`.
    public func ping() -> Bool {
        (try? runSimple("SELECT 1")) != nil
    }

    /// A ``PostgresError`` with SQLSTATE 57014 (`query_canceled`).
    public static func isCancellation(_ error: any Error) -> Bool {
        (error as? PostgresError)?.isQueryCanceled == true
    }

    /// `BEGIN [ISOLATION LEVEL …] [READ ONLY]`.
    public static func transactionStart(isolation: SQLIsolationLevel?, readOnly: Bool) -> [String] {
        var begin = "BEGIN"
        if let isolation { begin += " ISOLATION LEVEL \(isolation.rawValue)" }
        if readOnly { begin += " READ ONLY" }
        return [begin]
    }

    /// Every ``PostgresClient`` has a notification listener.
    public typealias ClientExtension = PostgresListener
}
