import CMariaDB
import FoundationEssentials
public import SyncBridgeSQL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The Connector/C side of one connection: SyncBridge's MariaDB adapter (an ``SQLSession``).
///
/// It lives on its connection's ``ThreadExecutor`` thread (inside a ``ThreadBound``) and is only
/// ever touched there: every Connector/C call on the `MYSQL` handle and its statements happens on
/// that one thread. Applications use it through ``MariaDBConnection`` and ``MariaDBClient``, never
/// directly.
public final class MariaDBSession {
    let mysql: UnsafeMutablePointer<MYSQL>
    /// The server's id of this connection (`CONNECTION_ID()`), the target of `KILL QUERY`.
    let threadID: UInt
    /// Prepared statements by SQL text.
    private var statements: [String: PreparedStatement] = [:]
    private var useCounter: UInt64 = 0
    /// Prepared statements kept per connection; beyond that, the least recently used is closed.
    static let statementCacheLimit = 256

    /// Set once the connection broke or the server ended it.
    private(set) var isBroken = false

    /// The statement whose rows are being streamed, if any.
    private var streaming: PreparedStatement?

    private init(mysql: UnsafeMutablePointer<MYSQL>) {
        self.mysql = mysql
        self.threadID = mysql_thread_id(mysql)
    }

    /// Whether the connection is still usable.
    public var isHealthy: Bool { !isBroken }

    // MARK: Connecting

    /// Connects (blocking) with `configuration`'s safe defaults, then sets the session up: UTC,
    /// strict SQL mode, the statement timeout.
    static func open(configuration: MariaDBConfiguration) throws -> MariaDBSession {
        let mysql = try connectHandle(configuration)
        let session = MariaDBSession(mysql: mysql)
        do {
            var settings = ["time_zone = '+00:00'"]
            if configuration.strictMode {
                settings.append("sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')")
            }
            if let timeout = configuration.statementTimeout {
                settings.append("max_statement_time = \(seconds(timeout))")
            }
            try session.runText("SET " + settings.joined(separator: ", "))
        } catch {
            mysql_close(mysql)
            throw error
        }
        return session
    }

    /// Opens a `MYSQL` handle with the configuration's options; used for sessions and for the
    /// side connections that send `KILL QUERY`.
    static func connectHandle(_ configuration: MariaDBConfiguration) throws -> UnsafeMutablePointer<MYSQL> {
        guard let mysql = mysql_init(nil) else {
            throw MariaDBError(kind: .connectionFailed, number: 2008, message: "Connector/C could not allocate a connection")
        }
        func setInteger(_ option: mysql_option, _ value: UInt32) {
            var value = value
            mysql_options(mysql, option, &value)
        }
        func wholeSeconds(_ duration: Duration) -> UInt32 {
            let (seconds, attoseconds) = duration.components
            return UInt32(clamping: max(1, seconds + (attoseconds > 0 ? 1 : 0)))
        }
        setInteger(MYSQL_OPT_CONNECT_TIMEOUT, wholeSeconds(configuration.connectTimeout))
        setInteger(MYSQL_OPT_READ_TIMEOUT, wholeSeconds(configuration.readTimeout))
        setInteger(MYSQL_OPT_WRITE_TIMEOUT, wholeSeconds(configuration.writeTimeout))
        setInteger(MYSQL_OPT_LOCAL_INFILE, configuration.allowLocalInfile ? 1 : 0)
        var noReconnect: my_bool = 0
        mysql_options(mysql, MYSQL_OPT_RECONNECT, &noReconnect)
        mysql_options(mysql, MYSQL_SET_CHARSET_NAME, configuration.characterSet)
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

    /// `duration` in seconds, as MariaDB's time settings take them (`1.5`).
    static func seconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let microseconds = max(1, seconds * 1_000_000 + attoseconds / 1_000_000_000_000)
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
        for statement in statements.values { statement.close() }
        statements.removeAll()
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
    func statementError(_ statement: PreparedStatement) -> MariaDBError {
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
    func runText(_ sql: String) throws {
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
        var rows: [SQLRow] = []
        do {
            while let values = try statement.fetchRow(session: self) {
                rows.append(SQLRow(columns: columns, values: values))
            }
            try finishResults(statement)
        } catch {
            statement.discardResults()
            throw error
        }
        return Outcome(rows: rows, rowsAffected: rows.count, lastInsertID: 0)
    }

    /// Prepares (or reuses), binds and executes `query`; the statement's rows, if any, wait to be
    /// fetched.
    private func execute(_ query: SQLQuery, timeout: Duration?) throws -> PreparedStatement {
        var sql = query.render { _ in "?" }
        if let timeout {
            sql = "SET STATEMENT max_statement_time = \(Self.seconds(timeout)) FOR " + sql
        }
        for attempt in 1...2 {
            let statement = try prepared(sql)
            guard statement.parameterCount == query.bindings.count else {
                throw MariaDBError(
                    kind: .client,
                    message: "the statement has \(statement.parameterCount) placeholders but \(query.bindings.count) values were interpolated; write literal '?' inside string literals only",
                    query: sql
                )
            }
            let succeeded = try ParameterBinding.withBound(query.bindings, to: statement) {
                mysql_stmt_execute(statement.handle) == 0
            }
            if succeeded {
                try statement.readMetadata(session: self)
                return statement
            }
            let error = statementError(statement)
            // ER_NEED_REPREPARE: the statement did not run; prepare it anew once.
            if error.number == 1615 && attempt == 1 {
                forget(statement)
                continue
            }
            // CR_NEW_STMT_METADATA: the table gained or lost columns since the statement was
            // prepared. The server ran it, but Connector/C cannot read its rows. A read is
            // prepared anew and run once more; anything else is not run twice.
            if error.number == 2057 {
                forget(statement)
                if attempt == 1 && Self.isRead(sql) { continue }
                throw MariaDBError(
                    kind: .client,
                    number: 2057,
                    message: "the result's columns changed since the statement was prepared (the table was altered); it ran on the server but its rows could not be read, and it was not run again. It is prepared anew on the next call",
                    query: sql
                )
            }
            if error.kind == .client && error.number == 2014 {
                statement.discardResults()
            }
            throw error
        }
        preconditionFailure("unreachable: the loop returns or throws")
    }

    /// Whether `sql` only reads (`SELECT`, `WITH`, `SHOW`…), so that running it again changes
    /// nothing.
    static func isRead(_ sql: String) -> Bool {
        let words = sql.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "(" })
        var first = words.first.map { $0.uppercased() } ?? ""
        if first == "SET", let forIndex = words.firstIndex(where: { $0.uppercased() == "FOR" }), forIndex + 1 < words.count {
            first = words[forIndex + 1].uppercased()  // SET STATEMENT max_statement_time = … FOR SELECT …
        }
        return ["SELECT", "WITH", "SHOW", "VALUES", "TABLE", "DESCRIBE", "EXPLAIN"].contains(first)
    }

    /// The prepared statement for `sql`, preparing it on first use.
    private func prepared(_ sql: String) throws -> PreparedStatement {
        useCounter &+= 1
        if let existing = statements[sql] {
            existing.lastUsed = useCounter
            return existing
        }
        if statements.count >= Self.statementCacheLimit,
            let oldest = statements.values.min(by: { $0.lastUsed < $1.lastUsed })
        {
            forget(oldest)
        }
        guard let handle = mysql_stmt_init(mysql) else { throw connectionError(query: sql) }
        let status = sql.utf8CString.withUnsafeBufferPointer { buffer in
            mysql_stmt_prepare(handle, buffer.baseAddress, UInt(buffer.count - 1))
        }
        let statement = PreparedStatement(handle: handle, sql: sql)
        guard status == 0 else {
            let error = statementError(statement)
            statement.close()
            throw error
        }
        statement.lastUsed = useCounter
        statements[sql] = statement
        return statement
    }

    private func forget(_ statement: PreparedStatement) {
        statements[statement.sql] = nil
        statement.close()
    }

    /// Skips any further result sets (a `CALL` sends a status result after its rows).
    private func finishResults(_ statement: PreparedStatement) throws {
        while mysql_stmt_more_results(statement.handle) != 0 {
            let next = mysql_stmt_next_result(statement.handle)
            if next > 0 { throw statementError(statement) }
            if next < 0 { break }
            mysql_stmt_free_result(statement.handle)
        }
        mysql_stmt_free_result(statement.handle)
    }

    // MARK: Streaming

    private func refuseWhileStreaming() throws {
        if let streaming {
            throw MariaDBError(
                kind: .connectionBusy,
                message: "the connection is streaming the rows of another statement (\(streaming.sql)); finish or drop that stream first",
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
        var rows: [SQLRow] = []
        rows.reserveCapacity(min(limit, 1024))
        do {
            while rows.count < limit, let values = try statement.fetchRow(session: self) {
                rows.append(SQLRow(columns: columns, values: values))
            }
            if rows.count < limit {
                streaming = nil
                try finishResults(statement)
            }
        } catch {
            streaming = nil
            statement.discardResults()
            throw error
        }
        return rows.isEmpty ? nil : rows
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

/// A prepared statement and the buffers its rows are read into.
final class PreparedStatement {
    let handle: UnsafeMutablePointer<MYSQL_STMT>
    let sql: String
    let parameterCount: Int
    var lastUsed: UInt64 = 0

    /// The current result's columns; `nil` for statements without rows.
    private(set) var columns: SQLColumns?
    private var fields: [FieldShape] = []
    private var binds: UnsafeMutablePointer<MYSQL_BIND>?
    private var buffers: [UnsafeMutableRawPointer] = []
    private var capacities: [Int] = []
    private var lengths: UnsafeMutablePointer<UInt>?
    private var nulls: UnsafeMutablePointer<my_bool>?
    private var truncations: UnsafeMutablePointer<my_bool>?

    /// What decides how a column is read: Connector/C's type, flags and character set, and the
    /// column's name.
    private struct FieldShape {
        let type: enum_field_types
        let flags: UInt32
        let charset: UInt32
        let nameBytes: [UInt8]
        /// How the column is read, decided once per result shape rather than per value.
        let category: ColumnCategory
        var name: String { String(decoding: nameBytes, as: UTF8.self) }

        init(_ field: MYSQL_FIELD) {
            type = field.type
            flags = field.flags
            charset = field.charsetnr
            category = ColumnCategory(type: field.type, flags: field.flags, charset: field.charsetnr)
            nameBytes = field.name.map { name in
                Array(UnsafeRawBufferPointer(start: name, count: Int(field.name_length)))
            } ?? []
        }

        /// Whether `field` describes the same column, compared without allocating.
        func matches(_ field: MYSQL_FIELD) -> Bool {
            guard field.type == type, field.flags == flags, field.charsetnr == charset,
                Int(field.name_length) == nameBytes.count
            else { return false }
            guard !nameBytes.isEmpty else { return true }
            guard let name = field.name else { return false }
            return nameBytes.withUnsafeBytes { memcmp($0.baseAddress!, name, nameBytes.count) == 0 }
        }
    }

    init(handle: UnsafeMutablePointer<MYSQL_STMT>, sql: String) {
        self.handle = handle
        self.sql = sql
        self.parameterCount = Int(mysql_stmt_param_count(handle))
    }

    func close() {
        releaseBuffers()
        mysql_stmt_close(handle)
    }

    /// Reads and drops whatever is left of the current result.
    func discardResults() {
        mysql_stmt_free_result(handle)
        mysql_stmt_reset(handle)
    }

    private func releaseBuffers() {
        for buffer in buffers { buffer.deallocate() }
        buffers = []
        capacities = []
        binds?.deallocate()
        lengths?.deallocate()
        nulls?.deallocate()
        truncations?.deallocate()
        binds = nil
        lengths = nil
        nulls = nil
        truncations = nil
    }

    /// Reads the executed statement's result columns and binds buffers for them; reuses the
    /// previous columns and buffers when the shape has not changed (the usual case, checked
    /// without allocating).
    func readMetadata(session: MariaDBSession) throws {
        // The connection holds the metadata the server sent with this execution; the
        // statement's own copy keeps the column names from when it was prepared.
        let count = Int(handle.pointee.field_count)
        guard count > 0 else {
            columns = nil
            return
        }
        let current = Int(session.mysql.pointee.field_count) == count ? session.mysql.pointee.fields : nil
        guard let fieldArray = current ?? handle.pointee.fields else { throw session.statementError(self) }
        if count == fields.count, columns != nil, binds != nil, (0..<count).allSatisfy({ fields[$0].matches(fieldArray[$0]) }) {
            // Same buffers; binding them again is a few stores per column and does not rely on
            // what Connector/C keeps across a reset (an abandoned or failed result).
            guard mysql_stmt_bind_result(handle, binds) == 0 else { throw session.statementError(self) }
            return
        }
        var shapes: [FieldShape] = []
        shapes.reserveCapacity(count)
        for index in 0..<count {
            shapes.append(FieldShape(fieldArray[index]))
        }
        releaseBuffers()
        fields = shapes
        columns = SQLColumns(
            shapes.enumerated().map { index, shape in
                SQLColumn(index: index, name: shape.name, databaseType: shape.category.typeName(type: shape.type, flags: shape.flags))
            },
            typeCodes: shapes.map { UInt32($0.type.rawValue) }
        )
        let binds = UnsafeMutablePointer<MYSQL_BIND>.allocate(capacity: count)
        binds.initialize(repeating: MYSQL_BIND(), count: count)
        let lengths = UnsafeMutablePointer<UInt>.allocate(capacity: count)
        lengths.initialize(repeating: 0, count: count)
        let nulls = UnsafeMutablePointer<my_bool>.allocate(capacity: count)
        nulls.initialize(repeating: 0, count: count)
        let truncations = UnsafeMutablePointer<my_bool>.allocate(capacity: count)
        truncations.initialize(repeating: 0, count: count)
        for (index, shape) in shapes.enumerated() {
            let category = shape.category
            let capacity = category.initialCapacity
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
            buffers.append(buffer)
            capacities.append(capacity)
            binds[index].buffer_type = category.bufferType
            binds[index].buffer = buffer
            binds[index].buffer_length = UInt(capacity)
            binds[index].length = lengths + index
            binds[index].is_null = nulls + index
            binds[index].error = truncations + index
            binds[index].is_unsigned = category == .unsigned ? 1 : 0
        }
        self.binds = binds
        self.lengths = lengths
        self.nulls = nulls
        self.truncations = truncations
        guard mysql_stmt_bind_result(handle, binds) == 0 else { throw session.statementError(self) }
    }

    /// Fetches the next row of the current result; `nil` at its end.
    func fetchRow(session: MariaDBSession) throws -> [SQLValue]? {
        guard let binds, let lengths, let nulls else { return nil }
        let status = mysql_stmt_fetch(handle)
        switch status {
        case 0, MYSQL_DATA_TRUNCATED:
            break
        case MYSQL_NO_DATA:
            return nil
        default:
            throw session.statementError(self)
        }
        var values: [SQLValue] = []
        values.reserveCapacity(fields.count)
        for index in fields.indices {
            if nulls[index] != 0 {
                values.append(.null)
                continue
            }
            let length = Int(lengths[index])
            let category = fields[index].category
            if category.isVariableLength && length > capacities[index] {
                try grow(column: index, to: length, binds: binds, session: session)
            }
            values.append(category.value(in: UnsafeRawBufferPointer(start: buffers[index], count: length), buffer: buffers[index]))
        }
        return values
    }

    /// Reads a column that did not fit its buffer into a larger one, which later rows then use.
    private func grow(column index: Int, to length: Int, binds: UnsafeMutablePointer<MYSQL_BIND>, session: MariaDBSession) throws {
        let capacity = max(length, capacities[index] * 2)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        buffers[index].deallocate()
        buffers[index] = buffer
        capacities[index] = capacity
        binds[index].buffer = buffer
        binds[index].buffer_length = UInt(capacity)
        guard mysql_stmt_fetch_column(handle, binds + index, UInt32(index), 0) == 0 else {
            throw session.statementError(self)
        }
        // Later rows land in the new buffer.
        guard mysql_stmt_bind_result(handle, binds) == 0 else { throw session.statementError(self) }
    }
}

/// How a result column is read and what ``SQLValue`` it becomes.
enum ColumnCategory: Equatable {
    case null
    case signed
    case unsigned
    case float
    case double
    case decimal
    case date
    case dateTime
    case time
    case text
    case binary
    case bit
    case json

    /// The `binary` collation: bytes, not text.
    static let binaryCharset: UInt32 = 63

    init(type: enum_field_types, flags: UInt32, charset: UInt32) {
        switch type {
        case MYSQL_TYPE_NULL:
            self = .null
        case MYSQL_TYPE_TINY, MYSQL_TYPE_SHORT, MYSQL_TYPE_INT24, MYSQL_TYPE_LONG, MYSQL_TYPE_LONGLONG, MYSQL_TYPE_YEAR:
            self = flags & UInt32(UNSIGNED_FLAG) != 0 ? .unsigned : .signed
        case MYSQL_TYPE_FLOAT:
            self = .float
        case MYSQL_TYPE_DOUBLE:
            self = .double
        case MYSQL_TYPE_DECIMAL, MYSQL_TYPE_NEWDECIMAL:
            self = .decimal
        case MYSQL_TYPE_DATE, MYSQL_TYPE_NEWDATE:
            self = .date
        case MYSQL_TYPE_DATETIME, MYSQL_TYPE_TIMESTAMP, MYSQL_TYPE_DATETIME2, MYSQL_TYPE_TIMESTAMP2:
            self = .dateTime
        case MYSQL_TYPE_TIME, MYSQL_TYPE_TIME2:
            self = .time
        case MYSQL_TYPE_BIT:
            self = .bit
        case MYSQL_TYPE_JSON:
            self = .json
        default:
            self = charset == Self.binaryCharset ? .binary : .text
        }
    }

    /// The buffer type Connector/C converts the column into.
    var bufferType: enum_field_types {
        switch self {
        case .null: MYSQL_TYPE_NULL
        case .signed, .unsigned: MYSQL_TYPE_LONGLONG
        case .float: MYSQL_TYPE_FLOAT
        case .double: MYSQL_TYPE_DOUBLE
        case .date: MYSQL_TYPE_DATE
        case .dateTime: MYSQL_TYPE_DATETIME
        case .time: MYSQL_TYPE_TIME
        case .decimal, .text, .json: MYSQL_TYPE_STRING
        case .binary, .bit: MYSQL_TYPE_BLOB
        }
    }

    var isVariableLength: Bool {
        switch self {
        case .decimal, .text, .json, .binary, .bit: true
        default: false
        }
    }

    var initialCapacity: Int {
        switch self {
        case .date, .dateTime, .time: MemoryLayout<MYSQL_TIME>.size
        case .decimal: 80
        case .text, .json, .binary: 256
        default: 8
        }
    }

    /// The column's value, read from `bytes` (variable-length columns) or `buffer` (fixed ones).
    func value(in bytes: UnsafeRawBufferPointer, buffer: UnsafeMutableRawPointer) -> SQLValue {
        switch self {
        case .null:
            return .null
        case .signed:
            return .int(buffer.load(as: Int64.self))
        case .unsigned:
            return .uint(buffer.load(as: UInt64.self))
        case .float:
            return .float(buffer.load(as: Float.self))
        case .double:
            return .double(buffer.load(as: Double.self))
        case .decimal:
            return .decimal(String(decoding: bytes, as: UTF8.self))
        case .text:
            if let text = String(validating: bytes, as: UTF8.self) { return .text(text) }
            return .bytes(Array(bytes))
        case .binary:
            return .bytes(Array(bytes))
        case .json:
            return .json(Array(bytes))
        case .bit:
            return .uint(bytes.reduce(0) { $0 << 8 | UInt64($1) })
        case .date, .dateTime, .time:
            return MariaDBTime.value(buffer.load(as: MYSQL_TIME.self), category: self)
        }
    }

    /// The SQL name of the column's type, for errors: `BIGINT UNSIGNED`, `VARCHAR`, `BLOB`…
    func typeName(type: enum_field_types, flags: UInt32) -> String {
        let unsigned = flags & UInt32(UNSIGNED_FLAG) != 0 ? " UNSIGNED" : ""
        let binary = self == .binary
        switch type {
        case MYSQL_TYPE_TINY: return "TINYINT" + unsigned
        case MYSQL_TYPE_SHORT: return "SMALLINT" + unsigned
        case MYSQL_TYPE_INT24: return "MEDIUMINT" + unsigned
        case MYSQL_TYPE_LONG: return "INT" + unsigned
        case MYSQL_TYPE_LONGLONG: return "BIGINT" + unsigned
        case MYSQL_TYPE_YEAR: return "YEAR"
        case MYSQL_TYPE_FLOAT: return "FLOAT"
        case MYSQL_TYPE_DOUBLE: return "DOUBLE"
        case MYSQL_TYPE_DECIMAL, MYSQL_TYPE_NEWDECIMAL: return "DECIMAL"
        case MYSQL_TYPE_DATE, MYSQL_TYPE_NEWDATE: return "DATE"
        case MYSQL_TYPE_DATETIME, MYSQL_TYPE_DATETIME2: return "DATETIME"
        case MYSQL_TYPE_TIMESTAMP, MYSQL_TYPE_TIMESTAMP2: return "TIMESTAMP"
        case MYSQL_TYPE_TIME, MYSQL_TYPE_TIME2: return "TIME"
        case MYSQL_TYPE_BIT: return "BIT"
        case MYSQL_TYPE_JSON: return "JSON"
        case MYSQL_TYPE_NULL: return "NULL"
        case MYSQL_TYPE_ENUM: return "ENUM"
        case MYSQL_TYPE_SET: return "SET"
        case MYSQL_TYPE_GEOMETRY: return "GEOMETRY"
        case MYSQL_TYPE_STRING: return binary ? "BINARY" : "CHAR"
        case MYSQL_TYPE_VARCHAR, MYSQL_TYPE_VAR_STRING: return binary ? "VARBINARY" : "VARCHAR"
        case MYSQL_TYPE_TINY_BLOB, MYSQL_TYPE_MEDIUM_BLOB, MYSQL_TYPE_LONG_BLOB, MYSQL_TYPE_BLOB:
            return binary ? "BLOB" : "TEXT"
        default: return "type \(type.rawValue)"
        }
    }
}
