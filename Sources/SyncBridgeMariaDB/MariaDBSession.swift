import CMariaDB
import FoundationEssentials
import SyncBridge
public import SyncBridgeSQL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The Connector/C side of one connection: SyncBridge's MariaDB adapter (an ``SQLSession``).
///
/// It lives on its connection's `ThreadExecutor` thread (inside a `ThreadBound`) and is only
/// ever touched there: every Connector/C call on the `MYSQL` handle and its statements happens on
/// that one thread. Applications use it through ``MariaDBConnection`` and ``MariaDBClient``, never
/// directly.
public final class MariaDBSession {
    let mysql: UnsafeMutablePointer<MYSQL>
    /// The server's id of this connection (`CONNECTION_ID()`), the target of `KILL QUERY`.
    let threadID: UInt
    /// Prepared statements by SQL text: the 256 most recently used.
    var statements = SQLStatementCache<String, MariaDBPreparedStatement>()

    /// Set once the connection broke or the server ended it.
    private(set) var isBroken = false

    /// The statement whose rows are being streamed, if any.
    private var streaming: MariaDBPreparedStatement?

    /// The statement an I/O thread runs with Connector/C's non-blocking calls, if any.
    var nonBlockingStatement: NonBlockingStatement?
    /// Whether Connector/C's context for non-blocking calls is set up (on first use).
    var allowsNonBlockingCalls = false

    /// Where the session is connected, for spans.
    public let tracingTarget: SQLTracingTarget
    /// Whether the server ends statements past their timeout (`SET STATEMENT max_statement_time
    /// … FOR`); otherwise the connection sends `KILL QUERY` when the deadline passes.
    let serverEndsTimeouts: Bool

    /// Whether `executeMany` sends bulk commands: configured so (or by default, not behind a
    /// proxy) and supported by the server.
    let usesBulkExecution: Bool

    private init(mysql: UnsafeMutablePointer<MYSQL>, configuration: MariaDBConfiguration) {
        self.mysql = mysql
        self.serverEndsTimeouts = configuration.effectiveTimeoutStrategy == .server
        var capabilities: UInt = 0
        _ = mariadb_get_info(mysql, MARIADB_CONNECTION_EXTENDED_SERVER_CAPABILITIES, &capabilities)
        let bulkSupported = capabilities & UInt(MARIADB_CLIENT_STMT_BULK_OPERATIONS >> 32) != 0
        self.usesBulkExecution = bulkSupported && (configuration.bulkExecution ?? !configuration.isBehindProxy)
        tracingTarget = SQLTracingTarget(
            address: configuration.unixSocket ?? configuration.host,
            port: configuration.unixSocket == nil ? configuration.port : nil,
            namespace: configuration.database
        )
        self.threadID = mysql_thread_id(mysql)
    }

    /// Whether the connection is still usable.
    public var isHealthy: Bool { !isBroken }

    // MARK: Connecting

    /// Connects (blocking) with `configuration`'s safe defaults, then sets the session up: UTC,
    /// strict SQL mode, the statement timeout. Behind a proxy, with literal values only.
    static func open(configuration: MariaDBConfiguration) throws -> MariaDBSession {
        let mysql = try connectHandle(configuration)
        let session = MariaDBSession(mysql: mysql, configuration: configuration)
        do {
            var settings = ["time_zone = '+00:00'"]
            if configuration.isBehindProxy {
                // A proxy routes and multiplexes only what it can parse: no `@@` expression.
                let mode = try sqlMode(
                    for: configuration,
                    serverVersion: mysql_get_server_version(mysql),
                    server: mysql
                )
                settings.append("sql_mode = '\(mode)'")
            } else if configuration.strictMode {
                settings.append("sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')")
            }
            if let timeout = configuration.statementTimeout, configuration.effectiveTimeoutStrategy == .server {
                settings.append("max_statement_time = \(seconds(timeout))")
            }
            try session.runControl("SET " + settings.joined(separator: ", "))
        } catch {
            mysql_close(mysql)
            throw error
        }
        return session
    }

    /// The SQL mode a session behind a proxy sets as a literal: the configuration's, or the
    /// server version's default modes (with `STRICT_ALL_TABLES` in strict mode).
    ///
    /// - Throws: ``MariaDBError`` of kind ``MariaDBError/Kind/invalidConfiguration`` when the
    ///   configuration's mode is not a list of mode names.
    static func sqlMode(
        for configuration: MariaDBConfiguration,
        serverVersion: UInt,
        server: UnsafeMutablePointer<MYSQL>
    ) throws -> String {
        if let mode = configuration.sqlMode {
            guard mode.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ",") }) else {
                throw MariaDBError(
                    kind: .invalidConfiguration,
                    message: "sqlMode must be mode names separated by commas (letters, digits, '_'), not '\(mode)'"
                )
            }
            return mode
        }
        let info = mysql_get_server_info(server).map { String(cString: $0) } ?? ""
        var modes: [String]
        if info.contains("MariaDB") || serverVersion < 80000 {
            modes = [
                "STRICT_TRANS_TABLES", "ERROR_FOR_DIVISION_BY_ZERO", "NO_AUTO_CREATE_USER", "NO_ENGINE_SUBSTITUTION",
            ]
        } else {
            modes = [
                "ONLY_FULL_GROUP_BY", "STRICT_TRANS_TABLES", "NO_ZERO_IN_DATE", "NO_ZERO_DATE",
                "ERROR_FOR_DIVISION_BY_ZERO", "NO_ENGINE_SUBSTITUTION",
            ]
        }
        if configuration.strictMode { modes.append("STRICT_ALL_TABLES") }
        return modes.joined(separator: ",")
    }

    /// Opens a `MYSQL` handle with the configuration's options; used for sessions and for the
    /// side connections that send `KILL QUERY`.
    static func connectHandle(_ configuration: MariaDBConfiguration) throws -> UnsafeMutablePointer<MYSQL> {
        guard let mysql = mysql_init(nil) else {
            throw MariaDBError(
                kind: .connectionFailed,
                number: 2008,
                message: "Connector/C could not allocate a connection"
            )
        }
        func setInteger(_ option: mysql_option, _ value: UInt32) {
            var value = value
            mysql_options(mysql, option, &value)
        }
        func wholeSeconds(_ duration: Duration) -> UInt32 {
            UInt32(clamping: max(1, (duration.nanosecondCount + 999_999_999) / 1_000_000_000))
        }
        setInteger(MYSQL_OPT_CONNECT_TIMEOUT, wholeSeconds(configuration.connectTimeout))
        setInteger(MYSQL_OPT_READ_TIMEOUT, wholeSeconds(configuration.readTimeout))
        setInteger(MYSQL_OPT_WRITE_TIMEOUT, wholeSeconds(configuration.writeTimeout))
        setInteger(MYSQL_OPT_LOCAL_INFILE, configuration.allowLocalInfile ? 1 : 0)
        var noReconnect: my_bool = 0
        mysql_options(mysql, MYSQL_OPT_RECONNECT, &noReconnect)
        mysql_options(mysql, MYSQL_SET_CHARSET_NAME, configuration.characterSet)
        if configuration.unixSocket == nil {
            // TCP to `host`, also when it is `localhost` (which Connector/C would otherwise take
            // for the default unix socket, bypassing the port and TLS).
            var tcp = MYSQL_PROTOCOL_TCP.rawValue
            mysql_options(mysql, MYSQL_OPT_PROTOCOL, &tcp)
        }
        let tls = configuration.tls
        if configuration.unixSocket == nil && tls.mode != .disabled {
            mysql_ssl_set(mysql, tls.keyFile, tls.certificateFile, tls.certificateAuthorityFile, nil, nil)
            if tls.mode == .required || tls.mode == .verifyIdentity {
                var enforce: my_bool = 1
                mysql_options(mysql, MYSQL_OPT_SSL_ENFORCE, &enforce)
            }
            var verify: my_bool = tls.mode == .verifyIdentity ? 1 : 0
            mysql_options(mysql, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify)
        }
        // Found rows rather than changed rows, as PostgreSQL counts them: an UPDATE that matches
        // a row but leaves it unchanged still counts it. No CLIENT_MULTI_STATEMENTS.
        let flags = UInt(CLIENT_FOUND_ROWS)
        let connected = mysql_real_connect(
            mysql,
            configuration.unixSocket == nil ? configuration.host : nil,
            configuration.user,
            configuration.password,
            configuration.database,
            UInt32(clamping: configuration.port),
            configuration.unixSocket,
            flags
        )
        guard connected != nil else {
            let error = MariaDBError(
                kind: .connectionFailed,
                number: mysql_errno(mysql),
                sqlState: String(cString: mysql_sqlstate(mysql)),
                message: String(cString: mysql_error(mysql)),
                host: configuration.unixSocket ?? "\(configuration.host):\(configuration.port)"
            )
            mysql_close(mysql)
            throw error
        }
        if configuration.unixSocket == nil { setKeepalives(mysql, configuration) }
        // Connector/C may fall back to plain text when the server offers no TLS; a configuration
        // that requires TLS must not.
        if (tls.mode == .required || tls.mode == .verifyIdentity) && configuration.unixSocket == nil
            && mysql_get_ssl_cipher(mysql) == nil
        {
            mysql_close(mysql)
            throw MariaDBError(
                kind: .connectionFailed,
                number: 2026,
                sqlState: "08000",
                message: "the server does not offer TLS, which tls=\(tls.name) requires",
                host: "\(configuration.host):\(configuration.port)"
            )
        }
        return mysql
    }

    /// Sets TCP keepalives and the user timeout on the connection's socket (Connector/C has no
    /// options for them).
    private static func setKeepalives(_ mysql: UnsafeMutablePointer<MYSQL>, _ configuration: MariaDBConfiguration) {
        let socket = Int32(truncatingIfNeeded: mysql_get_socket(mysql))
        guard socket >= 0 else { return }
        func set(_ level: Int32, _ option: Int32, _ value: Int) {
            var value = Int32(clamping: value)
            _ = setsockopt(socket, level, option, &value, socklen_t(MemoryLayout<Int32>.size))
        }
        if let idle = configuration.keepaliveIdle {
            set(SOL_SOCKET, SO_KEEPALIVE, 1)
            set(Int32(IPPROTO_TCP), TCP_KEEPIDLE, max(1, Int(idle.components.seconds)))
            set(Int32(IPPROTO_TCP), TCP_KEEPINTVL, max(1, Int(configuration.keepaliveInterval.components.seconds)))
            set(Int32(IPPROTO_TCP), TCP_KEEPCNT, max(1, configuration.keepaliveCount))
        }
        if let userTimeout = configuration.tcpUserTimeout {
            set(Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, Int(userTimeout.millisecondCount))
        }
    }

    /// `duration` in seconds, as MariaDB's time settings take them (`1.5`).
    static func seconds(_ duration: Duration) -> String {
        let microseconds = max(1, duration.microsecondCount)
        let whole = microseconds / 1_000_000
        let fraction = microseconds % 1_000_000
        guard fraction != 0 else { return "\(whole)" }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 6 - digits.count) + digits
        while digits.last == "0" { digits.removeLast() }
        return "\(whole).\(digits)"
    }

    /// Closes every statement and the connection.
    public func close() {
        for statement in statements.removeAll() { statement.close() }
        mysql_close(mysql)
        isBroken = true
    }

    /// Marks the connection unusable: a pool will discard it.
    public func markBroken() {
        isBroken = true
    }

    /// A round trip to the server; marks the session broken when it fails.
    @discardableResult
    public func ping() -> Bool {
        if isBroken { return false }
        if mysql_ping(mysql) != 0 { isBroken = true }
        return !isBroken
    }

    // MARK: Errors

    /// The connection's last error, classified; marks the session broken when the connection is.
    func connectionError(query: String?) -> MariaDBError {
        classify(
            number: mysql_errno(mysql),
            sqlState: String(cString: mysql_sqlstate(mysql)),
            message: String(cString: mysql_error(mysql)),
            query: query
        )
    }

    /// A statement's last error, classified.
    func statementError(_ statement: MariaDBPreparedStatement) -> MariaDBError {
        // An error packet read while fetching rows lands on the connection, not the statement.
        if mysql_stmt_errno(statement.handle) == 0 && mysql_errno(mysql) != 0 {
            return connectionError(query: statement.sql)
        }
        return classify(
            number: mysql_stmt_errno(statement.handle),
            sqlState: String(cString: mysql_stmt_sqlstate(statement.handle)),
            message: String(cString: mysql_stmt_error(statement.handle)),
            query: statement.sql
        )
    }

    private func classify(number: UInt32, sqlState: String, message: String, query: String?) -> MariaDBError {
        let kind = Self.kind(ofErrorNumber: number)
        if kind == .connectionClosed { isBroken = true }
        return MariaDBError(kind: kind, number: number, sqlState: sqlState, message: message, query: query)
    }

    /// What an error number means for the connection.
    static func kind(ofErrorNumber number: UInt32) -> MariaDBError.Kind {
        switch number {
        case 1969:  // ER_STATEMENT_TIMEOUT: max_statement_time exceeded
            return .timedOut
        case 2006, 2013, 2055,  // server gone, lost connection (reading, extended)
            1053, 1152, 1184, 1927, 4031:  // shutdown, aborted, new-connection aborted, killed, idle timeout
            return .connectionClosed
        case 2000..<3000:
            return .client
        default:
            return .server
        }
    }

    // MARK: Running statements

    typealias Outcome = SQLOutcome

    /// Runs a statement without parameters through the text protocol: session setup and
    /// transaction control. A result, if any, is read and dropped.
    public func runControl(_ sql: String) throws {
        try refuseWhileStreaming()
        let status = sql.utf8CString.withUnsafeBufferPointer { buffer in
            mysql_real_query(mysql, buffer.baseAddress, UInt(buffer.count - 1))
        }
        guard status == 0 else { throw connectionError(query: sql) }
        if mysql_field_count(mysql) > 0 {
            let result = mysql_store_result(mysql)
            mysql_free_result(result)
        }
    }

    /// Runs `query` as a prepared statement (prepared on first use, cached) with its values bound
    /// through the binary protocol, and reads all its rows.
    func run(_ query: SQLQuery, statementTimeout timeout: Duration?) throws -> Outcome {
        try refuseWhileStreaming()
        let statement = try execute(query, timeout: timeout)
        guard let columns = statement.columns else {
            return Outcome(
                rows: [],
                rowsAffected: Int(clamping: mysql_stmt_affected_rows(statement.handle)),
                lastInsertID: mysql_stmt_insert_id(statement.handle)
            )
        }
        var values: [SQLValue] = []
        var rowCount = 0
        do {
            while try statement.fetchRow(into: &values, session: self) { rowCount += 1 }
            try finishResults(statement)
        } catch {
            statement.discardResults()
            throw error
        }
        return Outcome(
            rows: SQLRow.rows(columns: columns, values: values, rowCount: rowCount),
            rowsAffected: rowCount,
            lastInsertID: 0
        )
    }

    /// Prepares (or reuses), binds and executes `query`; the statement's rows, if any, wait to be
    /// fetched.
    private func execute(_ query: SQLQuery, timeout: Duration?) throws -> MariaDBPreparedStatement {
        let sql = Self.text(of: query, timeout: timeout)
        for attempt in 1...2 {
            let statement = try prepared(sql)
            try Self.checkParameterCount(of: statement, against: query)
            let succeeded = try ParameterBinding.withBound(query.bindings, to: statement) {
                mysql_stmt_execute(statement.handle) == 0
            }
            if succeeded {
                try statement.readMetadata(session: self)
                return statement
            }
            let error = statementError(statement)
            if try preparesAgain(after: error, of: statement, attempt: attempt) { continue }
            if error.kind == .client && error.number == 2014 {
                statement.discardResults()
            }
            throw error
        }
        preconditionFailure("unreachable: the loop returns or throws")
    }

    /// The text the server receives for `query`: `?` placeholders, behind `SET STATEMENT
    /// max_statement_time = … FOR` when the server ends it at `timeout`.
    static func text(of query: SQLQuery, timeout: Duration?) -> String {
        let sql = query.render { _ in "?" }
        guard let timeout else { return sql }
        return "SET STATEMENT max_statement_time = \(seconds(timeout)) FOR " + sql
    }

    /// Refuses values that do not match the statement's placeholders.
    static func checkParameterCount(of statement: MariaDBPreparedStatement, against query: SQLQuery) throws {
        guard statement.parameterCount == query.bindings.count else {
            throw MariaDBError(
                kind: .client,
                message:
                    "the statement has \(statement.parameterCount) placeholders but \(query.bindings.count) values were interpolated; write literal '?' inside string literals only",
                query: statement.sql
            )
        }
    }

    /// Whether an execution of `statement` that failed with `error` is prepared anew and run once
    /// more: the statement is dropped from the cache, and on the first attempt
    /// `ER_NEED_REPREPARE` (it did not run) or `CR_NEW_STMT_METADATA` for a read (it ran, but its
    /// rows could not be read) try again.
    ///
    /// - Throws: For `CR_NEW_STMT_METADATA` on anything but a read's first attempt, an error
    ///   saying that the statement ran and was not run again.
    func preparesAgain(after error: MariaDBError, of statement: MariaDBPreparedStatement, attempt: Int) throws -> Bool {
        switch error.number {
        case 1615:  // ER_NEED_REPREPARE: the statement did not run.
            guard attempt == 1 else { return false }
            forget(statement)
            return true
        case 2057:
            // CR_NEW_STMT_METADATA: the table gained or lost columns since the statement was
            // prepared. The server ran it, but Connector/C cannot read its rows. A read is
            // prepared anew and run once more; anything else is not run twice.
            forget(statement)
            if attempt == 1 && Self.isRead(statement.sql) { return true }
            throw MariaDBError(
                kind: .client,
                number: 2057,
                message:
                    "the result's columns changed since the statement was prepared (the table was altered); it ran on the server but its rows could not be read, and it was not run again. It is prepared anew on the next call",
                query: statement.sql
            )
        default:
            return false
        }
    }

    /// Whether `sql` only reads (`SELECT`, `WITH`, `SHOW`…), so that running it again changes
    /// nothing.
    static func isRead(_ sql: String) -> Bool {
        let words = sql.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "(" })
        var first = words.first.map { $0.uppercased() } ?? ""
        if first == "SET", let forIndex = words.firstIndex(where: { $0.uppercased() == "FOR" }),
            forIndex + 1 < words.count
        {
            first = words[forIndex + 1].uppercased()  // SET STATEMENT max_statement_time = … FOR SELECT …
        }
        return ["SELECT", "WITH", "SHOW", "VALUES", "TABLE", "DESCRIBE", "EXPLAIN"].contains(first)
    }

    /// The prepared statement for `sql`, preparing it on first use.
    func prepared(_ sql: String) throws -> MariaDBPreparedStatement {
        if let existing = statements.statement(for: sql) { return existing }
        guard let handle = mysql_stmt_init(mysql) else { throw connectionError(query: sql) }
        let status = sql.utf8CString.withUnsafeBufferPointer { buffer in
            mysql_stmt_prepare(handle, buffer.baseAddress, UInt(buffer.count - 1))
        }
        let statement = MariaDBPreparedStatement(handle: handle, sql: sql)
        guard status == 0 else {
            let error = statementError(statement)
            statement.close()
            throw error
        }
        statements.insert(statement, for: sql)?.close()
        return statement
    }

    func forget(_ statement: MariaDBPreparedStatement) {
        _ = statements.remove(statement.sql)
        statement.close()
    }

    /// Skips any further result sets (a `CALL` sends a status result after its rows).
    private func finishResults(_ statement: MariaDBPreparedStatement) throws {
        while mysql_stmt_more_results(statement.handle) != 0 {
            let next = mysql_stmt_next_result(statement.handle)
            if next > 0 { throw statementError(statement) }
            if next < 0 { break }
            mysql_stmt_free_result(statement.handle)
        }
        mysql_stmt_free_result(statement.handle)
    }

    // MARK: Streaming

    /// Over when the server closed or reset the connection, or sent anything unasked: the
    /// protocol is strictly request and answer, and what a server sends an idle connection is its
    /// error before it closes it (a `KILL`, a shutdown). Reads nothing during a stream, whose
    /// rows wait on the socket between batches.
    public func checkWhileIdle() -> SQLIdleCheck {
        guard streaming == nil else { return .inUse }
        let socket = Int32(truncatingIfNeeded: mysql_get_socket(mysql))
        return SQLIdleSocket.peek(socket) == .nothing ? .usable : .over
    }

    func refuseWhileStreaming() throws {
        if let streaming {
            throw MariaDBError(
                kind: .connectionBusy,
                message:
                    "the connection is streaming the rows of another statement (\(streaming.sql)); finish or drop that stream first",
                query: streaming.sql
            )
        }
    }

    /// Executes `query` and leaves its rows on the connection, to be read with
    /// ``nextBatch(limit:)``.
    public func beginStream(_ query: SQLQuery) throws {
        try refuseWhileStreaming()
        let statement = try execute(query, timeout: nil)
        if statement.columns != nil {
            streaming = statement
        }
    }

    /// Reads up to `limit` rows of the streamed statement; `nil` once they are exhausted.
    public func nextBatch(limit: Int) throws -> [SQLRow]? {
        guard let statement = streaming, let columns = statement.columns else { return nil }
        var values: [SQLValue] = []
        values.reserveCapacity(min(limit, 1024) * columns.all.count)
        var rowCount = 0
        do {
            while rowCount < limit, try statement.fetchRow(into: &values, session: self) { rowCount += 1 }
            if rowCount < limit {
                streaming = nil
                try finishResults(statement)
            }
        } catch {
            streaming = nil
            statement.discardResults()
            throw error
        }
        return rowCount == 0 ? nil : SQLRow.rows(columns: columns, values: values, rowCount: rowCount)
    }

    /// Abandons the streamed statement: `cancel` stops the server sending (`KILL QUERY`), then
    /// what was already sent is read and dropped, and the connection is checked with a ping.
    public func abandonStream(cancel: () -> Void) {
        guard let statement = streaming else { return }
        streaming = nil
        cancel()
        statement.discardResults()
        ping()
    }
}
