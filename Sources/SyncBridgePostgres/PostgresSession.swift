import CLibPQ
import FoundationEssentials
import SyncBridge
public import SyncBridgeSQL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The libpq side of one connection: SyncBridge's PostgreSQL adapter (an ``SQLSession``).
///
/// It lives on its connection's `ThreadExecutor` thread (inside a `ThreadBound`) and is only
/// ever touched there: every libpq call on the `PGconn` happens on that one thread. Applications
/// use it through ``PostgresConnection`` and ``PostgresClient``, never directly.
public final class PostgresSession {
    /// The `PGconn*`.
    let connection: OpaquePointer
    /// Prepared statements' names by rendered SQL and parameter types: the 256 most recently
    /// used.
    var statements = SQLStatementCache<StatementKey, String>()
    var nextStatementNumber = 0
    /// Whether statements are prepared with names (not behind a transaction pooler that cannot
    /// keep them).
    let usesNamedStatements: Bool
    /// Behind a transaction pooler, which keeps prepared statements itself: evicted ones are
    /// forgotten, not deallocated with SQL the pooler does not route.
    let isBehindTransactionPooler: Bool

    struct StatementKey: Hashable {
        let sql: String
        let types: [UInt32]
    }

    private init(connection: OpaquePointer, configuration: PostgresConfiguration) {
        self.connection = connection
        self.usesNamedStatements = configuration.usesNamedStatements
        self.isBehindTransactionPooler = configuration.isBehindTransactionPooler
    }

    /// Set once the server ended the session (a `FATAL` error) or libpq lost the connection.
    var isBroken = false

    /// The statements an I/O thread has in flight in libpq's pipeline mode.
    var pipeline = PipelineState()

    /// Marks the connection unusable: a pool discards it.
    public func markBroken() {
        isBroken = true
    }

    /// Whether the connection is still usable.
    public var isHealthy: Bool {
        !isBroken && PQstatus(connection) == CONNECTION_OK
    }

    // MARK: Connecting

    /// Connects (blocking) and prepares the session: UTF-8, UTC, ISO dates, and the default
    /// statement timeout when one is given (not behind a transaction pooler, where the client
    /// keeps it).
    static func open(_ configuration: PostgresConfiguration, connectionString: String? = nil) throws -> PostgresSession
    {
        let connectionString = connectionString ?? configuration.connectionString
        _ = try PostgresConfiguration.redactedDescription(of: connectionString)
        // Defaults come before `dbname`, whose expansion (the user's connection string or URL)
        // overrides them; `client_encoding` comes after, since results are decoded as UTF-8.
        // TCP keepalives and a user timeout find a peer that vanished (a half-open connection)
        // within about a minute, not the hours of the kernel's defaults.
        let keywords = [
            "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
            "tcp_user_timeout", "dbname", "client_encoding",
        ]
        let values = ["10", "1", "30", "10", "3", "30000", connectionString, "UTF8"]
        let connection = withCStringArray(keywords) { keywords in
            withCStringArray(values) { values in
                PQconnectdbParams(keywords, values, 1)
            }
        }
        guard let connection else {
            throw PostgresError(
                kind: .connectionFailed,
                message: "libpq could not allocate a connection",
                sqlState: "08006"
            )
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(connection)).trimmedWhitespace
            let host = describeHost(connection)
            PQfinish(connection)
            throw PostgresError(kind: .connectionFailed, message: message, sqlState: "08006", host: host)
        }
        let session = PostgresSession(connection: connection, configuration: configuration)
        do {
            // Behind a transaction pooler, a session setting lands on whichever server connection
            // ran it and stays there for other clients; PgBouncer tracks TimeZone and DateStyle
            // (it sets them again on the server connection each client gets), nothing else.
            var setup = "SET TimeZone TO 'UTC'; SET DateStyle TO 'ISO, MDY'"
            if !configuration.isBehindTransactionPooler {
                setup += "; SET extra_float_digits TO 1"
                if let statementTimeout = configuration.statementTimeout {
                    let milliseconds = max(1, statementTimeout.millisecondCount)
                    setup += "; SET statement_timeout TO \(milliseconds)"
                }
            }
            try session.runControl(setup)
        } catch {
            PQfinish(connection)
            throw error
        }
        return session
    }

    /// `host:port` of the server libpq last tried.
    static func describeHost(_ connection: OpaquePointer) -> String? {
        guard let host = PQhost(connection).map({ String(cString: $0) }), !host.isEmpty else { return nil }
        let port = PQport(connection).map { String(cString: $0) } ?? ""
        return port.isEmpty ? host : "\(host):\(port)"
    }

    /// Closes the connection (`PQfinish`).
    public func close() {
        PQfinish(connection)
    }

    // MARK: Running statements

    typealias Outcome = SQLOutcome

    /// Runs a statement without parameters through the simple protocol (several statements
    /// allowed): session setup, transaction control.
    public func runControl(_ sql: String) throws {
        let result = PQexec(connection, sql)
        defer { PQclear(result) }
        _ = try outcome(of: result, sql: sql)
        if let refusal = Self.refusedCommit(sql, result) { throw refusal }
    }

    /// The server answers COMMIT in a transaction that an error aborted with ROLLBACK, and no
    /// error: the caller must not take it for a commit. The error to throw then, or `nil`.
    static func refusedCommit(_ sql: String, _ result: OpaquePointer?) -> PostgresError? {
        guard sql == "COMMIT", let result, String(cString: PQcmdStatus(result)) == "ROLLBACK" else { return nil }
        return PostgresError(
            kind: .server,
            message: "the transaction was aborted by an earlier error and rolled back instead of committing",
            sqlState: "25P02",
            query: sql
        )
    }

    /// Runs `query` with its bound parameters, preparing it on first use.
    func run(_ query: SQLQuery) throws -> Outcome {
        try refuseWhileStreaming()
        let statement = try Statement(query)
        let name = try prepare(statement)
        let result = withParameterArrays(statement.parameters) { values, lengths, formats in
            if let name {
                return PQexecPrepared(connection, name, Int32(statement.parameters.count), values, lengths, formats, 0)
            }
            return statement.types.withUnsafeBufferPointer { types in
                PQexecParams(
                    connection,
                    statement.sql,
                    Int32(types.count),
                    types.baseAddress,
                    values,
                    lengths,
                    formats,
                    0
                )
            }
        }
        defer { PQclear(result) }
        do {
            return try outcome(of: result, sql: statement.sql)
        } catch let error as PostgresError where error.sqlState == "0A000" && error.message.contains("cached plan") {
            // The table changed shape under a prepared statement: forget it, so the next call
            // prepares it anew.
            if let stale = statements.remove(statement.key) { deallocate(stale) }
            throw error
        }
    }

    /// Sends a statement without waiting for its result (libpq's asynchronous API): prepared
    /// when `name` is given.
    func send(_ statement: Statement, name: String?) throws {
        let sent = withParameterArrays(statement.parameters) { values, lengths, formats in
            if let name {
                return PQsendQueryPrepared(
                    connection,
                    name,
                    Int32(statement.parameters.count),
                    values,
                    lengths,
                    formats,
                    0
                )
            }
            return statement.types.withUnsafeBufferPointer { types in
                PQsendQueryParams(
                    connection,
                    statement.sql,
                    Int32(types.count),
                    types.baseAddress,
                    values,
                    lengths,
                    formats,
                    0
                )
            }
        }
        guard sent == 1 else { throw connectionError(query: statement.sql) }
    }

    /// A query rendered for libpq, with its parameters encoded.
    struct Statement {
        let sql: String
        let parameters: [PostgresTextFormat.Parameter]
        var types: [UInt32] { parameters.map(\.oid) }
        var key: StatementKey { StatementKey(sql: sql, types: types) }

        init(_ query: SQLQuery) throws {
            sql = query.render { "$\($0)" }
            guard query.bindings.count <= Int(UInt16.max) else {
                throw SQLEncodingError(
                    parameter: Int(UInt16.max) + 1,
                    reason: "PostgreSQL takes at most 65,535 parameters"
                )
            }
            parameters = try query.bindings.enumerated().map { index, value in
                try PostgresTextFormat.parameter(value, index: index + 1)
            }
        }
    }

    /// The name of the prepared statement for `statement`, preparing it on first use (the least
    /// recently used one is deallocated when the cache is full).
    func prepare(_ statement: Statement) throws -> String? {
        guard usesNamedStatements else { return nil }
        let key = statement.key
        if let existing = statements.statement(for: key) { return existing }
        let name = "sb_\(nextStatementNumber)"
        let prepared = key.types.withUnsafeBufferPointer { types in
            PQprepare(connection, name, statement.sql, Int32(types.count), types.baseAddress)
        }
        defer { PQclear(prepared) }
        _ = try outcome(of: prepared, sql: statement.sql)
        nextStatementNumber += 1
        if let evicted = statements.insert(name, for: key) { deallocate(evicted) }
        return name
    }

    /// Frees a prepared statement on the server (its name is one of ours, `sb_N`). Best effort: in
    /// a failed transaction the server refuses, and the statement lives until the session ends.
    private func deallocate(_ name: String) {
        guard !isBehindTransactionPooler else { return }
        PQclear(PQexec(connection, "DEALLOCATE \(name)"))
    }

    // MARK: Notifications

    /// Waits up to `timeout` milliseconds for the server to send something, then returns the
    /// notifications received (LISTEN/NOTIFY).
    func pollNotifications(timeoutMilliseconds: Int32) throws -> [PostgresNotification] {
        try refuseWhileStreaming()
        var notifications = takeNotifications()
        guard notifications.isEmpty else { return notifications }
        var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        guard descriptor.fd >= 0 else { throw connectionError(query: nil) }
        _ = poll(&descriptor, 1, timeoutMilliseconds)
        guard PQconsumeInput(connection) == 1, PQstatus(connection) == CONNECTION_OK else {
            throw connectionError(query: nil)
        }
        notifications = takeNotifications()
        return notifications
    }

    private func takeNotifications() -> [PostgresNotification] {
        var notifications: [PostgresNotification] = []
        while let notify = PQnotifies(connection) {
            notifications.append(
                PostgresNotification(
                    channel: String(cString: notify.pointee.relname),
                    payload: String(cString: notify.pointee.extra),
                    backendPID: notify.pointee.be_pid
                )
            )
            PQfreemem(notify)
        }
        return notifications
    }

    // MARK: Streaming

    /// The statement whose rows are being streamed, if any.
    private var streaming: (sql: String, columns: SQLColumns?)?

    /// The `COPY` in progress, if any, and whether it reads from the client.
    private var copying: String?
    private var copyingIn = false

    /// Reads what the server sent while the connection was idle (`PQconsumeInput`: libpq keeps a
    /// notification until the session's next poll for them, and hands a notice or the server's
    /// last error to the notice processor); over when the server closed the connection, which
    /// may show only behind that last message. Reads nothing during a stream or a COPY.
    public func checkWhileIdle() -> SQLIdleCheck {
        guard streaming == nil, copying == nil else { return .inUse }
        guard PQconsumeInput(connection) == 1, PQstatus(connection) == CONNECTION_OK,
            SQLIdleSocket.peek(PQsocket(connection)) != .closed
        else { return .over }
        return .usable
    }

    func refuseWhileStreaming() throws {
        if let streaming {
            throw PostgresError(
                kind: .connectionBusy,
                message:
                    "the connection is streaming the rows of another statement (\(streaming.sql)); finish or drop that stream first",
                sqlState: "55000"
            )
        }
        if let copying {
            throw PostgresError(
                kind: .connectionBusy,
                message: "the connection is in the middle of \(copying); finish or drop it first",
                sqlState: "55000"
            )
        }
    }

    // MARK: COPY

    /// Starts `COPY … FROM STDIN` or `COPY … TO STDOUT`.
    func beginCopy(_ sql: String, direction: ExecStatusType) throws {
        try refuseWhileStreaming()
        let result = PQexec(connection, sql)
        defer { PQclear(result) }
        guard PQresultStatus(result) == direction else {
            _ = try outcome(of: result, sql: sql)
            drainResults()
            throw PostgresError(
                kind: .protocolViolation,
                message: "the statement is not a COPY \(direction == PGRES_COPY_IN ? "FROM STDIN" : "TO STDOUT")",
                sqlState: "0A000",
                query: sql
            )
        }
        copying = sql
        copyingIn = direction == PGRES_COPY_IN
    }

    /// Sends one chunk of `COPY FROM STDIN` data.
    func putCopyData(_ bytes: [UInt8]) throws {
        let sent = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { PQputCopyData(connection, $0.baseAddress, Int32(buffer.count)) }
        }
        guard sent == 1 else { throw connectionError(query: copying) }
    }

    /// Ends `COPY FROM STDIN`: commits the rows, or aborts with `errorMessage`. Returns the row
    /// count.
    func endCopyIn(errorMessage: String?) throws -> Int {
        let sql = copying
        copying = nil
        guard PQputCopyEnd(connection, errorMessage) == 1 else { throw connectionError(query: sql) }
        var outcome = Outcome()
        var failure: (any Error)?
        while let result = PQgetResult(connection) {
            defer { PQclear(result) }
            do {
                outcome = try self.outcome(of: result, sql: sql)
            } catch {
                failure = failure ?? error
            }
        }
        if let failure { throw failure }
        return outcome.rowsAffected
    }

    /// Up to `maximumBytes` (at least one row) of `COPY TO STDOUT` data, one element per row;
    /// `nil` once it is all read.
    func nextCopyRows(maximumBytes: Int) throws -> [[UInt8]]? {
        guard let sql = copying else { return nil }
        var rows: [[UInt8]] = []
        var total = 0
        while total < maximumBytes {
            var buffer: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(connection, &buffer, 0)
            if length > 0, let buffer {
                rows.append(Array(UnsafeRawBufferPointer(start: buffer, count: Int(length))))
                PQfreemem(buffer)
                total += Int(length)
                continue
            }
            copying = nil
            if length == -2 { throw connectionError(query: sql) }
            // -1: done; the command's own result follows.
            var failure: (any Error)?
            while let result = PQgetResult(connection) {
                defer { PQclear(result) }
                do { _ = try outcome(of: result, sql: sql) } catch { failure = failure ?? error }
            }
            if let failure { throw failure }
            return rows.isEmpty ? nil : rows
        }
        return rows
    }

    /// Stops a `COPY` in progress (cancelling a `COPY TO STDOUT` on the server, aborting a `COPY
    /// FROM STDIN`), so the connection is ready for the next statement.
    func abandonCopy(cancel: () -> Void) {
        guard copying != nil else { return }
        copying = nil
        if copyingIn {
            _ = PQputCopyEnd(connection, "abandoned by the client")
        } else {
            cancel()
            var buffer: UnsafeMutablePointer<CChar>?
            while PQgetCopyData(connection, &buffer, 0) > 0 {
                PQfreemem(buffer)
                buffer = nil
            }
        }
        drainResults()
    }

    /// Sends `query` in single-row mode: its rows are then read in batches with `nextBatch`.
    public func beginStream(_ query: SQLQuery) throws {
        try refuseWhileStreaming()
        let statement = try Statement(query)
        let name = try prepare(statement)
        try send(statement, name: name)
        guard PQsetSingleRowMode(connection) == 1 else {
            drainResults()
            throw PostgresError(
                kind: .protocolViolation,
                message: "libpq refused single-row mode",
                sqlState: "XX000",
                query: statement.sql
            )
        }
        streaming = (statement.sql, nil)
    }

    /// Up to `limit` rows of the statement being streamed; `nil` once every row has been read.
    /// Blocks only for as many rows as it returns: the server waits for the rest.
    public func nextBatch(limit: Int) throws -> [SQLRow]? {
        guard let current = streaming else { return nil }
        var rows: [SQLRow] = []
        rows.reserveCapacity(min(limit, 1024))
        var columns = current.columns
        while rows.count < limit {
            guard let result = PQgetResult(connection) else {
                streaming = nil
                return rows.isEmpty ? nil : rows
            }
            defer { PQclear(result) }
            switch PQresultStatus(result) {
            case PGRES_SINGLE_TUPLE:
                let shared = columns ?? Self.columns(of: result).shared
                columns = shared
                rows.append(contentsOf: Self.rows(of: result, columns: shared))
            case PGRES_TUPLES_OK, PGRES_COMMAND_OK:
                continue
            default:
                do {
                    _ = try outcome(of: result, sql: current.sql)
                } catch {
                    drainResults()
                    streaming = nil
                    throw error
                }
            }
        }
        streaming = (current.sql, columns)
        return rows
    }

    /// Stops the statement being streamed: cancels it on the server and discards what is left,
    /// so the connection is ready for the next statement.
    public func abandonStream(cancel: () -> Void) {
        guard streaming != nil else { return }
        cancel()
        drainResults()
        streaming = nil
    }

    func drainResults() {
        while let result = PQgetResult(connection) {
            if PQresultStatus(result) == PGRES_FATAL_ERROR && PQstatus(connection) != CONNECTION_OK {
                isBroken = true
            }
            PQclear(result)
        }
    }

    /// Turns a `PGresult` into rows, or into a ``PostgresError``.
    /// `result`'s outcome after `earlier`, the statement's rows that came one result each
    /// (`PGRES_SINGLE_TUPLE`: single-row mode, which libpq leaves on after a stream for the next
    /// statement sent in pipeline mode): all the rows, counted together.
    func outcome(of result: OpaquePointer?, sql: String?, after earlier: [SQLRow]) throws -> Outcome {
        var outcome = try outcome(of: result, sql: sql)
        guard !earlier.isEmpty else { return outcome }
        outcome.rows = earlier + outcome.rows
        outcome.rowsAffected = outcome.rows.count
        return outcome
    }

    func outcome(of result: OpaquePointer?, sql: String?) throws -> Outcome {
        guard let result else {
            throw connectionError(query: sql)
        }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_SINGLE_TUPLE:
            return Outcome(rows: Self.rows(of: result), rowsAffected: Int(PQntuples(result)))
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
            return Outcome(rows: [], rowsAffected: affected)
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR, PGRES_BAD_RESPONSE:
            if PQstatus(connection) != CONNECTION_OK {
                isBroken = true
                throw connectionError(query: sql, result: result)
            }
            let error = Self.serverError(result, query: sql)
            if error.kind == .connectionClosed || cannotServeAsPrimary(after: error) { isBroken = true }
            throw error
        default:
            let status = String(cString: PQresStatus(PQresultStatus(result)))
            throw PostgresError(
                kind: .protocolViolation,
                message: "unexpected result status \(status)",
                sqlState: "XX000",
                query: sql
            )
        }
    }

    /// Whether `error` says that this session's server can no longer serve it: shutting down
    /// (57P01–57P03), a connection exception (class 08), or a write refused because the server is
    /// now a standby or read-only by default (25006 with `in_hot_standby` or
    /// `default_transaction_read_only` on, which PostgreSQL 14 and later report) — after a
    /// switchover the old primary follows the new one. A pool discards such a connection; a
    /// write refused in a transaction the caller began read-only does not count.
    func cannotServeAsPrimary(after error: PostgresError) -> Bool {
        switch error.sqlState {
        case "57P01", "57P02", "57P03":
            return true
        case "25006":
            func parameter(_ name: String) -> String? {
                PQparameterStatus(connection, name).map { String(cString: $0) }
            }
            return parameter("in_hot_standby") == "on" || parameter("default_transaction_read_only") == "on"
        default:
            return error.sqlState.hasPrefix("08")
        }
    }

    func connectionError(query: String?, result: OpaquePointer? = nil) -> PostgresError {
        isBroken = true
        var message = String(cString: PQerrorMessage(connection)).trimmedWhitespace
        if message.isEmpty, let result {
            message = String(cString: PQresultErrorMessage(result)).trimmedWhitespace
        }
        return PostgresError(
            kind: .connectionClosed,
            message: message.isEmpty ? "the connection is closed" : message,
            sqlState: "08006",
            host: Self.describeHost(connection),
            query: query
        )
    }

    static func serverError(_ result: OpaquePointer, query: String?) -> PostgresError {
        func field(_ code: Int32) -> String? {
            PQresultErrorField(result, code).map { String(cString: $0) }
        }
        // FATAL and PANIC end the session: the server closes the connection after sending them
        // (pg_terminate_backend, a shutdown, a crash).
        let severity = field(Int32(UInt8(ascii: "V"))) ?? field(Int32(UInt8(ascii: "S")))
        let endsSession = severity == "FATAL" || severity == "PANIC"
        return PostgresError(
            kind: endsSession ? .connectionClosed : .server,
            message: field(Int32(UInt8(ascii: "M"))) ?? String(cString: PQresultErrorMessage(result)),
            sqlState: field(Int32(UInt8(ascii: "C"))) ?? "XX000",
            severity: severity,
            detail: field(Int32(UInt8(ascii: "D"))),
            hint: field(Int32(UInt8(ascii: "H"))),
            position: field(Int32(UInt8(ascii: "P"))).flatMap { Int($0) },
            constraint: field(Int32(UInt8(ascii: "n"))),
            table: field(Int32(UInt8(ascii: "t"))),
            column: field(Int32(UInt8(ascii: "c"))),
            query: query
        )
    }

    /// A result's columns, and their type OIDs.
    static func columns(of result: OpaquePointer) -> (shared: SQLColumns, oids: [UInt32]) {
        let columnCount = Int(PQnfields(result))
        var oids = [UInt32]()
        var columns = [SQLColumn]()
        for index in 0..<columnCount {
            let oid = PQftype(result, Int32(index))
            oids.append(oid)
            columns.append(
                SQLColumn(
                    index: index,
                    name: String(cString: PQfname(result, Int32(index))),
                    databaseType: PostgresTextFormat.typeName(oid)
                )
            )
        }
        return (SQLColumns(columns, typeCodes: oids), oids)
    }

    /// Copies a result's rows out of libpq's memory.
    static func rows(of result: OpaquePointer) -> [SQLRow] {
        rows(of: result, columns: columns(of: result).shared)
    }

    /// Copies a result's rows out of libpq's memory, with columns already described.
    static func rows(of result: OpaquePointer, columns shared: SQLColumns) -> [SQLRow] {
        let columnCount = shared.all.count
        let rowCount = Int(PQntuples(result))
        let oids = shared.typeCodes
        // Every value in one buffer, row after row: one allocation per result.
        let values = [SQLValue](unsafeUninitializedCapacity: rowCount * columnCount) { buffer, initialized in
            var next = 0
            for row in 0..<Int32(rowCount) {
                for column in 0..<columnCount {
                    let value: SQLValue
                    if PQgetisnull(result, row, Int32(column)) != 0 {
                        value = .null
                    } else {
                        let text = UnsafeRawBufferPointer(
                            start: PQgetvalue(result, row, Int32(column)),
                            count: Int(PQgetlength(result, row, Int32(column)))
                        )
                        value = PostgresTextFormat.value(oid: oids[column], text: text)
                    }
                    buffer.initializeElement(at: next, to: value)
                    next += 1
                }
            }
            initialized = next
        }
        return SQLRow.rows(columns: shared, values: values, rowCount: rowCount)
    }
}

/// Calls `body` with a NULL-terminated array of C strings.
func withCStringArray<Result>(
    _ strings: [String],
    _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> Result
) -> Result {
    let duplicated = strings.map { strdup($0) }
    defer { for pointer in duplicated { free(pointer) } }
    let pointers: [UnsafePointer<CChar>?] = duplicated.map { $0.map { UnsafePointer($0) } } + [nil]
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Calls `body` with the value, length and format arrays `PQexecParams` takes.
private func withParameterArrays<Result>(
    _ parameters: [PostgresTextFormat.Parameter],
    _ body: (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> Result
) -> Result {
    let lengths = parameters.map { Int32($0.bytes?.count ?? 0) }
    let formats = parameters.map(\.format)
    // One buffer for every parameter's bytes, so their addresses stay put during the call.
    var storage = [UInt8]()
    storage.reserveCapacity(parameters.reduce(0) { $0 + ($1.bytes?.count ?? 0) + 1 })
    var offsets = [Int?]()
    for parameter in parameters {
        if let bytes = parameter.bytes {
            offsets.append(storage.count)
            storage.append(contentsOf: bytes)
            storage.append(0)  // text parameters are C strings
        } else {
            offsets.append(nil)
        }
    }
    return storage.withUnsafeBufferPointer { buffer in
        let base = UnsafeRawPointer(buffer.baseAddress).map { $0.assumingMemoryBound(to: CChar.self) }
        let values: [UnsafePointer<CChar>?] = offsets.map { offset in
            offset.flatMap { offset in base.map { $0 + offset } }
        }
        return values.withUnsafeBufferPointer { values in
            lengths.withUnsafeBufferPointer { lengths in
                formats.withUnsafeBufferPointer { formats in
                    body(values.baseAddress, lengths.baseAddress, formats.baseAddress)
                }
            }
        }
    }
}

extension String {
    /// The string without leading and trailing whitespace and newlines (libpq's messages end
    /// with a newline).
    var trimmedWhitespace: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}
