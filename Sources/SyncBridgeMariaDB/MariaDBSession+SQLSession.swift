public import CMariaDB
public import SyncBridgeSQL

extension MariaDBSession: SQLSession {
    /// `mariadb`: threads are named `sb-mariadb-N`, metrics `syncbridge.mariadb.*`.
    public static var databaseName: String { "mariadb" }

    /// `?` placeholders, as the server receives the statement.
    public static func tracingText(of query: SQLQuery) -> String {
        query.render { _ in "?" }
    }

    /// A ``MariaDBError``'s error number (the server's, or Connector/C's for connection errors).
    public static func tracingStatusCode(of error: any Error) -> String? {
        guard let error = error as? MariaDBError, error.number != 0 else { return nil }
        return String(error.number)
    }

    /// Connects with Connector/C (blocking) with `configuration`'s safe defaults, then sets the
    /// session up: UTC, strict SQL mode, the statement timeout.
    ///
    /// - Throws: ``MariaDBError`` with kind ``MariaDBError/Kind/connectionFailed`` naming the
    ///   server and Connector/C's reason.
    public static func open(_ configuration: MariaDBConfiguration) throws -> MariaDBSession {
        try open(configuration: configuration)
    }

    /// A ``MariaDBCanceller`` that sends `KILL QUERY` for this connection from a side connection.
    public func makeCanceller(configuration: MariaDBConfiguration) -> MariaDBCanceller {
        MariaDBCanceller(threadID: threadID, configuration: configuration)
    }

    /// The `MYSQL*`.
    public var rawHandle: UnsafeMutablePointer<MYSQL> { mysql }

    /// Runs `query` as a prepared statement (prepared on first use, cached) with its values bound
    /// through the binary protocol; with a `timeout`, the server aborts the statement when it
    /// passes (`max_statement_time`), failing with ``MariaDBError/Kind/timedOut``.
    public func run(_ query: SQLQuery, timeout: SQLTimeout?) throws -> SQLOutcome {
        try run(query, statementTimeout: serverEndsTimeouts ? timeout?.duration : nil)
    }

    /// Connector/C's socket (`mysql_get_socket`).
    public var socketDescriptor: Int32? {
        let socket = mysql_get_socket(mysql)
        return socket >= 0 ? Int32(socket) : nil
    }

    /// `false`: the server ends a statement past its timeout itself (`max_statement_time`).
    public static var cancelsAtTimeout: Bool { false }

    /// `true` with ``MariaDBConfiguration/TimeoutStrategy/clientCancels`` (the default behind a
    /// proxy): the connection sends `KILL QUERY` when a statement's timeout passes.
    public static func cancelsAtTimeout(_ configuration: MariaDBConfiguration) -> Bool {
        configuration.effectiveTimeoutStrategy == .clientCancels
    }

    /// With ``MariaDBConfiguration/TimeoutStrategy/clientCancels``, the configuration's statement
    /// timeout, which the client keeps (the server is not told).
    public static func clientStatementTimeout(_ configuration: MariaDBConfiguration) -> Duration? {
        configuration.effectiveTimeoutStrategy == .clientCancels ? configuration.statementTimeout : nil
    }

    /// A ``MariaDBError`` of kind ``MariaDBError/Kind/timedOut`` (error 1969,
    /// `ER_STATEMENT_TIMEOUT`).
    public static func timeoutError(_ timeout: SQLTimeout, query: SQLQuery) -> any Error {
        MariaDBError(
            kind: .timedOut,
            number: 1969,
            sqlState: "70100",
            message: "the statement did not finish within \(timeout.duration)",
            query: query.render { _ in "?" }
        )
    }

    /// A ``MariaDBError`` with number 1317 (`ER_QUERY_INTERRUPTED`).
    public static func isCancellation(_ error: any Error) -> Bool {
        (error as? MariaDBError)?.isQueryInterrupted == true
    }

    /// `SET TRANSACTION ISOLATION LEVEL …` when given, then `START TRANSACTION [READ ONLY]`.
    public static func transactionStart(isolation: SQLIsolationLevel?, readOnly: Bool) -> [String] {
        var begin: [String] = []
        if let isolation { begin.append("SET TRANSACTION ISOLATION LEVEL \(isolation.rawValue)") }
        begin.append(readOnly ? "START TRANSACTION READ ONLY" : "START TRANSACTION")
        return begin
    }

    /// Checks with a ping that the connection survived the interruption.
    public func recoverFromCancellation() {
        ping()
    }

    /// Marks the session broken when legacy code's last call found the connection gone.
    public func checkAfterRawAccess() {
        if Self.kind(ofErrorNumber: mysql_errno(mysql)) == .connectionClosed { markBroken() }
    }
}
