import CSQLite
import FoundationEssentials
public import SyncBridgeSQL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// SQLite as a SyncBridge database: the C calls of one `sqlite3*` connection, and nothing else.
///
/// This is the whole adapter of the guide "Wrap your own blocking C client". `SQLiteClient` (an
/// ``SQLClient`` over this session) gets the pool, the connections' own threads, statement lanes,
/// transactions and savepoints, streaming, cancellation (`sqlite3_interrupt`), timeouts, metrics,
/// the deadlock detector's view and `withRawConnection` from SyncBridge's shared core.
///
/// ```swift
/// let client = SQLiteClient(configuration: .init(path: "/var/lib/app/inventory.sqlite"))
/// let rows = try await client.query("SELECT sku, stock FROM products WHERE stock < \(threshold)")
/// ```
public final class SQLiteSession: SQLSession {
    /// Where the database file is, and how long a statement waits for another connection's lock.
    public struct Configuration: Sendable, CustomStringConvertible {
        /// The database file; created when missing.
        public var path: String
        /// How long a statement waits for a lock another connection holds (`sqlite3_busy_timeout`)
        /// before it fails with `SQLITE_BUSY`.
        public var busyTimeout: Duration

        /// A configuration for the file at `path`.
        public init(path: String, busyTimeout: Duration = .seconds(10)) {
            self.path = path
            self.busyTimeout = busyTimeout
        }

        /// The file's path.
        public var description: String { "sqlite:\(path)" }
    }

    /// The `sqlite3*`.
    public let rawHandle: OpaquePointer
    /// When the running statement must stop (monotonic nanoseconds), read by the progress
    /// handler; `UInt64.max` for no limit.
    private let deadline = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    /// Prepared statements by SQL text: the 256 most recently used, as SyncBridge's own adapters
    /// keep them.
    private var statements = SQLStatementCache<String, OpaquePointer>()
    /// The statement whose rows are being streamed, and its columns.
    private var streaming: (statement: OpaquePointer, columns: SQLColumns)?
    private var isBroken = false

    private init(handle: OpaquePointer) {
        rawHandle = handle
        deadline.initialize(to: .max)
    }

    deinit {
        deadline.deallocate()
    }

    /// `sqlite`: threads are named `sb-sqlite-N`, metrics `syncbridge.sqlite.*`.
    public static var databaseName: String { "sqlite" }

    /// `?1`, `?2`… placeholders in spans, as SQLite receives the statement.
    public static func tracingText(of query: SQLQuery) -> String {
        query.render { "?\($0)" }
    }

    /// Opens (or creates) the file, with write-ahead logging, foreign keys and the busy timeout.
    public static func open(_ configuration: Configuration) throws -> SQLiteSession {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let status = sqlite3_open_v2(configuration.path, &handle, flags, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw SQLiteError(code: status, message: "cannot open \(configuration.path): \(message)", sql: nil)
        }
        let session = SQLiteSession(handle: handle)
        let (seconds, attoseconds) = configuration.busyTimeout.components
        sqlite3_busy_timeout(handle, Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000))
        sqlite3_progress_handler(
            handle,
            1000,
            { context in
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                let nanoseconds = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
                return nanoseconds >= context!.load(as: UInt64.self) ? 1 : 0
            },
            UnsafeMutableRawPointer(session.deadline)
        )
        do {
            try session.runControl("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON")
        } catch {
            session.close()
            throw error
        }
        return session
    }

    /// A canceller that calls `sqlite3_interrupt`, which SQLite allows from any thread.
    public func makeCanceller(configuration: Configuration) -> SQLiteCanceller {
        SQLiteCanceller(rawHandle)
    }

    /// `false` once the connection is closed or a call found it unusable.
    public var isHealthy: Bool { !isBroken }

    /// Marks the connection unusable.
    public func markBroken() { isBroken = true }

    // MARK: Statements

    /// Prepares (once), binds and steps `query` to the end.
    public func run(_ query: SQLQuery, timeout: SQLTimeout?) throws -> SQLOutcome {
        try refuseWhileStreaming()
        let (statement, sql) = try prepare(query)
        deadline.pointee = timeout?.deadline ?? .max
        defer {
            deadline.pointee = .max
            sqlite3_reset(statement)
        }
        let columns = Self.columns(of: statement)
        var rows: [SQLRow] = []
        while let values = try step(statement, sql: sql, timeout: timeout) {
            rows.append(SQLRow(columns: columns, values: values))
        }
        let changed = sqlite3_column_count(statement) == 0 ? Int(sqlite3_changes(rawHandle)) : rows.count
        return SQLOutcome(
            rows: rows,
            rowsAffected: changed,
            lastInsertID: UInt64(bitPattern: sqlite3_last_insert_rowid(rawHandle))
        )
    }

    /// Runs parameterless SQL (several statements allowed).
    public func runControl(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(rawHandle, sql, nil, nil, &message)
        defer { sqlite3_free(message) }
        guard status == SQLITE_OK else {
            throw SQLiteError(
                code: sqlite3_extended_errcode(rawHandle),
                message: message.map { String(cString: $0) } ?? "",
                sql: sql
            )
        }
    }

    /// Starts stepping `query`; ``nextBatch(limit:)`` reads its rows.
    public func beginStream(_ query: SQLQuery) throws {
        try refuseWhileStreaming()
        let (statement, _) = try prepare(query)
        streaming = (statement, Self.columns(of: statement))
    }

    /// Up to `limit` more rows of the streamed statement; `nil` when it is exhausted.
    public func nextBatch(limit: Int) throws -> [SQLRow]? {
        guard let (statement, columns) = streaming else { return nil }
        var rows: [SQLRow] = []
        do {
            while rows.count < limit, let values = try step(statement, sql: nil, timeout: nil) {
                rows.append(SQLRow(columns: columns, values: values))
            }
        } catch {
            abandonStream {}
            throw error
        }
        if rows.count < limit { abandonStream {} }
        return rows.isEmpty ? nil : rows
    }

    /// Stops the streamed statement: SQLite runs in this process, so resetting it is enough.
    public func abandonStream(cancel: () -> Void) {
        guard let (statement, _) = streaming else { return }
        streaming = nil
        sqlite3_reset(statement)
    }

    /// `SELECT 1`.
    public func ping() -> Bool {
        (try? runControl("SELECT 1")) != nil
    }

    /// Finalises every statement and closes the connection.
    public func close() {
        for statement in statements.removeAll() { sqlite3_finalize(statement) }
        sqlite3_close_v2(rawHandle)
        isBroken = true
    }

    /// `false`: the progress handler stops a statement past its timeout.
    public static var cancelsAtTimeout: Bool { false }

    /// An ``SQLiteError`` that says the statement ran past `timeout`.
    public static func timeoutError(_ timeout: SQLTimeout, query: SQLQuery) -> any Error {
        SQLiteError(
            code: SQLITE_INTERRUPT,
            message: "the statement did not finish within \(timeout.duration) and was interrupted",
            sql: query.render { "?\($0)" },
            isTimeout: true
        )
    }

    /// `SQLITE_INTERRUPT`.
    public static func isCancellation(_ error: any Error) -> Bool {
        (error as? SQLiteError)?.primaryCode == SQLITE_INTERRUPT
    }

    /// `BEGIN IMMEDIATE` (the write lock at once, so that two writers never deadlock upgrading
    /// their locks), or `BEGIN DEFERRED` for a read-only transaction; SQLite transactions are
    /// serializable, whatever `isolation` asks.
    public static func transactionStart(isolation: SQLIsolationLevel?, readOnly: Bool) -> [String] {
        [readOnly ? "BEGIN DEFERRED" : "BEGIN IMMEDIATE"]
    }

    // MARK: The C calls

    private func refuseWhileStreaming() throws {
        guard streaming == nil else {
            throw SQLiteError(
                code: SQLITE_MISUSE,
                message: "the connection is streaming another statement's rows",
                sql: nil
            )
        }
    }

    /// The prepared statement for `query` (prepared on first use), with its values bound.
    private func prepare(_ query: SQLQuery) throws -> (OpaquePointer, String) {
        let sql = query.render { "?\($0)" }
        let statement: OpaquePointer
        if let cached = statements.statement(for: sql) {
            statement = cached
        } else {
            var prepared: OpaquePointer?
            guard sqlite3_prepare_v2(rawHandle, sql, -1, &prepared, nil) == SQLITE_OK, let prepared else {
                throw SQLiteError(
                    code: sqlite3_extended_errcode(rawHandle),
                    message: String(cString: sqlite3_errmsg(rawHandle)),
                    sql: sql
                )
            }
            if let evicted = statements.insert(prepared, for: sql) { sqlite3_finalize(evicted) }
            statement = prepared
        }
        sqlite3_clear_bindings(statement)
        for (offset, value) in query.bindings.enumerated() {
            try bind(value, at: Int32(offset + 1), of: statement, sql: sql)
        }
        return (statement, sql)
    }

    private func bind(_ value: SQLValue, at index: Int32, of statement: OpaquePointer, sql: String) throws {
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        func text(_ string: String) -> Int32 { sqlite3_bind_text(statement, index, string, -1, transient) }
        let status: Int32
        switch value {
        case .null: status = sqlite3_bind_null(statement, index)
        case .bool(let bool): status = sqlite3_bind_int64(statement, index, bool ? 1 : 0)
        case .int(let int): status = sqlite3_bind_int64(statement, index, int)
        case .uint(let uint):
            guard let int = Int64(exactly: uint) else {
                throw SQLEncodingError(
                    parameter: Int(index),
                    reason: "\(uint) does not fit SQLite's 64-bit signed integers"
                )
            }
            status = sqlite3_bind_int64(statement, index, int)
        case .float(let float): status = sqlite3_bind_double(statement, index, Double(float))
        case .double(let double): status = sqlite3_bind_double(statement, index, double)
        case .decimal(let digits): status = text(digits)
        case .text(let string):
            guard !string.utf8.contains(0) else {
                throw SQLEncodingError(parameter: Int(index), reason: "the text contains a NUL byte")
            }
            status = text(string)
        case .bytes(let bytes): status = sqlite3_bind_blob(statement, index, bytes, Int32(bytes.count), transient)
        case .uuid(let uuid): status = text(uuid.uuidString.lowercased())
        case .timestamp(let date): status = text(CivilTime.format(date))
        case .date(let date): status = text(CivilTime.format(date, includeTime: false))
        case .time(let duration):
            let (seconds, attoseconds) = duration.components
            status = text(CivilTime.formatTime(microseconds: seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        case .json(let bytes): status = text(String(decoding: bytes, as: UTF8.self))
        case .array:
            throw SQLEncodingError(parameter: Int(index), reason: "SQLite has no array type")
        }
        guard status == SQLITE_OK else {
            throw SQLiteError(code: status, message: String(cString: sqlite3_errmsg(rawHandle)), sql: sql)
        }
    }

    /// The next row of `statement`, or `nil` when it is done.
    private func step(_ statement: OpaquePointer, sql: String?, timeout: SQLTimeout?) throws -> [SQLValue]? {
        switch sqlite3_step(statement) {
        case SQLITE_ROW:
            return (0..<sqlite3_column_count(statement)).map { Self.value(of: statement, at: $0) }
        case SQLITE_DONE:
            return nil
        default:
            let code = sqlite3_extended_errcode(rawHandle)
            let sql = sql ?? String(cString: sqlite3_sql(statement))
            if code == SQLITE_INTERRUPT, let timeout, Self.now() >= timeout.deadline {
                throw SQLiteError(
                    code: code,
                    message: "the statement did not finish within \(timeout.duration) and was interrupted",
                    sql: sql,
                    isTimeout: true
                )
            }
            throw SQLiteError(code: code, message: String(cString: sqlite3_errmsg(rawHandle)), sql: sql)
        }
    }

    private static func columns(of statement: OpaquePointer) -> SQLColumns {
        SQLColumns(
            (0..<sqlite3_column_count(statement)).map { index in
                SQLColumn(
                    index: Int(index),
                    name: String(cString: sqlite3_column_name(statement, index)),
                    databaseType: sqlite3_column_decltype(statement, index).map { String(cString: $0) } ?? "ANY"
                )
            }
        )
    }

    /// SQLite types each value, not each column.
    private static func value(of statement: OpaquePointer, at index: Int32) -> SQLValue {
        switch sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER: return .int(sqlite3_column_int64(statement, index))
        case SQLITE_FLOAT: return .double(sqlite3_column_double(statement, index))
        case SQLITE_TEXT: return .text(String(cString: sqlite3_column_text(statement, index)))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, index))
            guard count > 0, let bytes = sqlite3_column_blob(statement, index) else { return .bytes([]) }
            return .bytes(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
        default: return .null
        }
    }

    private static func now() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}
