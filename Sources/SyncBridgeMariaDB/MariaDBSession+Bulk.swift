import CMariaDB
import FoundationEssentials
import SyncBridgeSQL

extension MariaDBSession {
    /// Bytes of values per bulk command, well under the servers' smallest default
    /// `max_allowed_packet` (16 MB since MariaDB 10.2.4; 4 MB before).
    static let bulkChunkBytes = 2 << 20

    /// Runs `query` (with `?` placeholders and no interpolated values) once for each of `rows`
    /// and returns the rows affected in all.
    ///
    /// With bulk execution, the rows go in as few bulk commands as fit ``bulkChunkBytes``; else
    /// one execution each. Outside a transaction, more than one command runs in a transaction of
    /// its own, so that the whole call stands or falls together (a single bulk command is one
    /// statement already). A failure names its row: the server's, from `GET DIAGNOSTICS`'s
    /// `ROW_NUMBER`.
    func executeMany(_ query: SQLQuery, rows: [[SQLValue]], statementTimeout timeout: Duration?) throws -> Int {
        try refuseWhileStreaming()
        var sql = query.render { _ in "?" }
        guard query.bindings.isEmpty else {
            throw MariaDBError(
                kind: .client,
                message:
                    "executeMany takes each row's values from `rows`: write a '?' for each of them in the statement and interpolate no value",
                query: sql
            )
        }
        if let timeout {
            sql = "SET STATEMENT max_statement_time = \(Self.seconds(timeout)) FOR " + sql
        }
        guard !rows.isEmpty else { return 0 }
        let width = try prepared(sql).parameterCount
        if let index = rows.firstIndex(where: { $0.count != width }) {
            throw MariaDBError(
                kind: .client,
                message: "row \(index) has \(rows[index].count) values but the statement has \(width) placeholders",
                query: sql,
                row: index
            )
        }
        // Every value is checked before anything is sent.
        let columns = try (0..<width).map { try BulkColumn(rows, column: $0) }
        let chunks = usesBulkExecution ? Self.chunks(of: rows, columns: columns) : rows.indices.map { $0..<($0 + 1) }
        let status = mysql.pointee.server_status
        let inTransaction =
            status & UInt32(SERVER_STATUS_IN_TRANS) != 0
            || status & UInt32(SERVER_STATUS_AUTOCOMMIT) == 0
        let ownTransaction = chunks.count > 1 && !inTransaction
        if ownTransaction { try runControl("START TRANSACTION") }
        do {
            var affected = 0
            for chunk in chunks {
                affected += try execute(sql, rows: rows[chunk], first: chunk.lowerBound, columns: columns)
            }
            if ownTransaction { try runControl("COMMIT") }
            return affected
        } catch {
            if ownTransaction && !isBroken { try? runControl("ROLLBACK") }
            throw error
        }
    }

    /// Runs the prepared `sql` for `rows` (one bulk command, or a single row's execution);
    /// prepares it anew once when the server asks to (`ER_NEED_REPREPARE`).
    private func execute(_ sql: String, rows: ArraySlice<[SQLValue]>, first: Int, columns: [BulkColumn]) throws -> Int {
        for attempt in 1...2 {
            let statement = try prepared(sql)
            let succeeded: Bool
            if usesBulkExecution {
                succeeded = try BulkBinding.withBound(rows, columns: columns, to: statement) {
                    mysql_stmt_execute(statement.handle) == 0
                }
            } else {
                succeeded = try ParameterBinding.withBound(rows[first], to: statement) {
                    mysql_stmt_execute(statement.handle) == 0
                }
            }
            if succeeded {
                let affected = Int(clamping: mysql_stmt_affected_rows(statement.handle))
                mysql_stmt_free_result(statement.handle)
                return affected
            }
            let error = statementError(statement)
            if error.number == 1615 && attempt == 1 {
                forget(statement)
                continue
            }
            guard error.kind == .server || error.kind == .timedOut else { throw error }
            throw error.inRow(first + (rows.count > 1 ? failedRow() ?? 0 : 0))
        }
        preconditionFailure("unreachable: the loop returns or throws")
    }

    /// The row, from 0, of the last bulk command that the server refused (`GET DIAGNOSTICS`'s
    /// `ROW_NUMBER`, MariaDB 10.7 and later); `nil` when the server does not say.
    private func failedRow() -> Int? {
        let diagnostics = "GET DIAGNOSTICS CONDITION 1 @syncbridge_row = ROW_NUMBER"
        guard mysql_real_query(mysql, diagnostics, UInt(diagnostics.utf8.count)) == 0 else { return nil }
        let select = "SELECT @syncbridge_row"
        guard mysql_real_query(mysql, select, UInt(select.utf8.count)) == 0,
            let result = mysql_store_result(mysql)
        else { return nil }
        defer { mysql_free_result(result) }
        guard let row = mysql_fetch_row(result), let value = row[0], let number = Int(String(cString: value)),
            number > 0
        else { return nil }
        return number - 1
    }

    /// Ranges of `rows` whose values fit ``bulkChunkBytes`` each (at least one row each).
    static func chunks(of rows: [[SQLValue]], columns: [BulkColumn]) -> [Range<Int>] {
        var chunks: [Range<Int>] = []
        var start = 0
        var bytes = 0
        for (index, row) in rows.enumerated() {
            var rowBytes = 0
            for (column, value) in zip(columns, row) { rowBytes += column.byteCount(of: value) + 10 }
            if index > start && bytes + rowBytes > bulkChunkBytes {
                chunks.append(start..<index)
                start = index
                bytes = 0
            }
            bytes += rowBytes
        }
        chunks.append(start..<rows.count)
        return chunks
    }
}

/// How one parameter's values are laid out for a bulk command: every row's value of it must be
/// of one kind (or `NULL`).
enum BulkColumn {
    case bool, int, uint, float, double
    /// Text-like values sent as bytes with the given type: text, decimals, JSON, UUIDs, and dates
    /// and times as their UTC text.
    case bytes(enum_field_types)
    /// Only `NULL`s.
    case null

    /// The layout of parameter `column` of `rows`, from its first non-null value.
    ///
    /// - Throws: ``SQLEncodingError`` naming the row and parameter of a value of another kind
    ///   than the first's, or of an array.
    init(_ rows: [[SQLValue]], column: Int) throws {
        var layout: BulkColumn?
        var firstRow = 0
        for (index, row) in rows.enumerated() {
            let value = row[column]
            guard let kind = try Self.kind(of: value, parameter: column + 1, row: index) else { continue }
            guard let established = layout else {
                layout = kind
                firstRow = index
                continue
            }
            guard established.name == kind.name else {
                throw SQLEncodingError(
                    parameter: column + 1,
                    reason:
                        "a bulk statement's parameter takes one type in every row: this is \(kind.name), row \(firstRow)'s is \(established.name)",
                    row: index
                )
            }
        }
        self = layout ?? .null
    }

    private static func kind(of value: SQLValue, parameter: Int, row: Int) throws -> BulkColumn? {
        switch value {
        case .null: return nil
        case .bool: return .bool
        case .int: return .int
        case .uint: return .uint
        case .float: return .float
        case .double: return .double
        case .decimal: return .bytes(MYSQL_TYPE_NEWDECIMAL)
        case .text, .uuid, .json: return .bytes(MYSQL_TYPE_STRING)
        case .bytes: return .bytes(MYSQL_TYPE_BLOB)
        case .timestamp: return .bytes(MYSQL_TYPE_DATETIME)
        case .date: return .bytes(MYSQL_TYPE_DATE)
        case .time: return .bytes(MYSQL_TYPE_TIME)
        case .array:
            throw SQLEncodingError(
                parameter: parameter,
                reason: "MariaDB has no array type; bind the elements one by one or send them as JSON",
                row: row
            )
        }
    }

    /// The kind's name, for errors.
    var name: String {
        switch self {
        case .bool: "a Bool"
        case .int: "an Int"
        case .uint: "a UInt"
        case .float: "a Float"
        case .double: "a Double"
        case .bytes(let type):
            switch type {
            case MYSQL_TYPE_NEWDECIMAL: "a decimal"
            case MYSQL_TYPE_BLOB: "bytes"
            case MYSQL_TYPE_DATETIME: "a timestamp"
            case MYSQL_TYPE_DATE: "a date"
            case MYSQL_TYPE_TIME: "a time"
            default: "text"
            }
        case .null: "NULL"
        }
    }

    /// Bytes of a fixed-size value in the command's array.
    var fixedSize: Int? {
        switch self {
        case .bool: 1
        case .int, .uint, .double: 8
        case .float: 4
        case .bytes, .null: nil
        }
    }

    /// Roughly what `value` adds to the command.
    func byteCount(of value: SQLValue) -> Int {
        if let fixedSize { return fixedSize }
        return BulkBinding.bytes(of: value)?.count ?? 0
    }
}

/// Binds many rows of values to a prepared statement, column by column
/// (`STMT_ATTR_ARRAY_SIZE`), for one bulk command.
enum BulkBinding {
    /// Binds `rows` to `statement`, runs `body` (which executes it), then frees the memory and
    /// turns the statement back into a single-row one.
    static func withBound<Result>(
        _ rows: ArraySlice<[SQLValue]>,
        columns: [BulkColumn],
        to statement: MariaDBPreparedStatement,
        _ body: () -> Result
    ) throws -> Result {
        let count = rows.count
        var size = UInt32(count)
        _ = mysql_stmt_attr_set(statement.handle, STMT_ATTR_ARRAY_SIZE, &size)
        var allocations: [UnsafeMutableRawPointer] = []
        func allocate(_ bytes: Int) -> UnsafeMutableRawPointer {
            let memory = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 8), alignment: 8)
            allocations.append(memory)
            return memory
        }
        defer {
            var single: UInt32 = 0
            _ = mysql_stmt_attr_set(statement.handle, STMT_ATTR_ARRAY_SIZE, &single)
            for memory in allocations { memory.deallocate() }
        }
        let binds = UnsafeMutablePointer<MYSQL_BIND>.allocate(capacity: max(columns.count, 1))
        binds.initialize(repeating: MYSQL_BIND(), count: max(columns.count, 1))
        defer { binds.deallocate() }
        for (column, layout) in columns.enumerated() {
            let indicators = allocate(count).bindMemory(to: CChar.self, capacity: count)
            for (offset, row) in rows.enumerated() {
                let isNull = if case .null = row[column] { true } else { false }
                indicators[offset] = CChar(isNull ? STMT_INDICATOR_NULL.rawValue : STMT_INDICATOR_NONE.rawValue)
            }
            binds[column].u.indicator = indicators
            if let size = layout.fixedSize {
                let values = allocate(size * count)
                for (offset, row) in rows.enumerated() {
                    let slot = values + offset * size
                    switch row[column] {
                    case .bool(let bool): slot.storeBytes(of: Int8(bool ? 1 : 0), as: Int8.self)
                    case .int(let int): slot.storeBytes(of: int, as: Int64.self)
                    case .uint(let uint): slot.storeBytes(of: uint, as: UInt64.self)
                    case .float(let float): slot.storeBytes(of: float, as: Float.self)
                    case .double(let double): slot.storeBytes(of: double, as: Double.self)
                    default: slot.initializeMemory(as: UInt8.self, repeating: 0, count: size)
                    }
                }
                binds[column].buffer = values
                switch layout {
                case .bool: binds[column].buffer_type = MYSQL_TYPE_TINY
                case .float: binds[column].buffer_type = MYSQL_TYPE_FLOAT
                case .double: binds[column].buffer_type = MYSQL_TYPE_DOUBLE
                default: binds[column].buffer_type = MYSQL_TYPE_LONGLONG
                }
                if case .uint = layout { binds[column].is_unsigned = 1 }
            } else {
                // Variable length: an array of pointers to the values and one of their lengths.
                let encoded = rows.map { bytes(of: $0[column]) ?? [] }
                let data = allocate(encoded.reduce(0) { $0 + $1.count })
                let pointers = allocate(MemoryLayout<UnsafeMutableRawPointer?>.stride * count)
                    .bindMemory(to: UnsafeMutableRawPointer?.self, capacity: count)
                let lengths = allocate(MemoryLayout<UInt>.stride * count).bindMemory(to: UInt.self, capacity: count)
                var position = 0
                for (offset, value) in encoded.enumerated() {
                    value.withUnsafeBytes { source in
                        if let base = source.baseAddress {
                            (data + position).copyMemory(from: base, byteCount: value.count)
                        }
                    }
                    pointers[offset] = data + position
                    lengths[offset] = UInt(value.count)
                    position += value.count
                }
                binds[column].buffer = UnsafeMutableRawPointer(pointers)
                binds[column].length = lengths
                if case .bytes(let type) = layout, type == MYSQL_TYPE_BLOB {
                    binds[column].buffer_type = MYSQL_TYPE_BLOB
                } else {
                    binds[column].buffer_type = MYSQL_TYPE_STRING
                }
            }
        }
        guard mysql_stmt_bind_param(statement.handle, binds) == 0 else {
            throw ParameterBinding.bindingError(statement)
        }
        return body()
    }

    /// The bytes a text-like value is sent as; `nil` for `NULL` and fixed-size values.
    static func bytes(of value: SQLValue) -> [UInt8]? {
        switch value {
        case .decimal(let text), .text(let text): Array(text.utf8)
        case .bytes(let bytes), .json(let bytes): bytes
        case .uuid(let uuid): Array(uuid.uuidString.lowercased().utf8)
        case .timestamp(let date):
            Array(MariaDBTime.text(of: MariaDBTime.time(from: date, type: MYSQL_TIMESTAMP_DATETIME)).utf8)
        case .date(let date): Array(MariaDBTime.text(of: MariaDBTime.time(from: date, type: MYSQL_TIMESTAMP_DATE)).utf8)
        case .time(let duration): Array(MariaDBTime.text(of: MariaDBTime.time(from: duration)).utf8)
        case .null, .bool, .int, .uint, .float, .double, .array: nil
        }
    }
}
