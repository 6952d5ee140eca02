import CLibPQ
public import SyncBridgeSQL

extension PostgresSession: SQLSession {
    /// `postgres`: threads are named `sb-postgres-N`, metrics `syncbridge.postgres.*`.
    public static var databaseName: String { "postgres" }

    /// `postgresql`, OpenTelemetry's name for the database.
    public static var tracingSystemName: String { "postgresql" }

    /// The host (or socket folder), port and database libpq connected to: with several hosts in
    /// the connection string, the one that answered.
    public var tracingTarget: SQLTracingTarget {
        func text(_ value: UnsafeMutablePointer<CChar>?) -> String? {
            guard let value else { return nil }
            let text = String(cString: value)
            return text.isEmpty ? nil : text
        }
        return SQLTracingTarget(
            address: text(PQhost(connection)),
            port: text(PQport(connection)).flatMap { Int($0) },
            namespace: text(PQdb(connection))
        )
    }

    /// Connects with libpq (blocking) and sets the session up: UTF-8, UTC, ISO dates, the default
    /// statement timeout (behind a transaction pooler, only what the pooler tracks).
    ///
    /// - Throws: ``PostgresError`` with kind ``PostgresError/Kind/connectionFailed`` naming the
    ///   host that failed and libpq's reason.
    public static func open(_ configuration: PostgresConfiguration) throws -> PostgresSession {
        try open(configuration, connectionString: nil)
    }

    /// Behind a transaction pooler, the configuration's statement timeout: the client keeps it
    /// (the server cannot, without a session setting that would reach other clients).
    public static func clientStatementTimeout(_ configuration: PostgresConfiguration) -> Duration? {
        configuration.isBehindTransactionPooler ? configuration.statementTimeout : nil
    }

    /// A ``PostgresCanceller`` over this connection's `PGcancel`.
    public func makeCanceller(configuration: PostgresConfiguration) -> PostgresCanceller {
        PostgresCanceller(connection: connection, server: Self.describeHost(connection) ?? "local")
    }

    /// The `PGconn*`.
    public var rawHandle: OpaquePointer { connection }

    /// Runs `query` with its bound parameters, prepared on first use. A `timeout` is enforced by
    /// the connection, which asks the server to cancel the statement when it passes.
    public func run(_ query: SQLQuery, timeout: SQLTimeout?) throws -> SQLOutcome {
        try run(query)
    }

    /// libpq's socket (`PQsocket`).
    public var socketDescriptor: Int32? {
        let socket = PQsocket(connection)
        return socket >= 0 ? socket : nil
    }

    /// A ``PostgresError`` of kind ``PostgresError/Kind/timedOut``.
    public static func timeoutError(_ timeout: SQLTimeout, query: SQLQuery) -> any Error {
        PostgresError(
            kind: .timedOut,
            message: "the statement did not finish within \(timeout.duration) and was cancelled",
            sqlState: "57014",
            query: query.render { "$\($0)" }
        )
    }

    /// `SELECT 1`.
    public func ping() -> Bool {
        (try? runControl("SELECT 1")) != nil
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
