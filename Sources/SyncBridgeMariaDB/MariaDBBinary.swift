import CMariaDB
import FoundationEssentials
import SyncBridge
import SyncBridgeSQL

/// Binds a query's values to a prepared statement's `?` parameters (binary protocol).
enum ParameterBinding {
    /// Binds `values` to `statement`, runs `body` (which executes it) and frees the bound memory.
    ///
    /// Every value is copied into one block that lives until `body` returns; Connector/C reads it
    /// during `mysql_stmt_execute`.
    static func withBound<Result>(
        _ values: [SQLValue],
        to statement: MariaDBPreparedStatement,
        _ body: () throws -> Result
    ) throws -> Result {
        guard !values.isEmpty else { return try body() }
        let count = values.count
        var offsets: [Int] = []
        offsets.reserveCapacity(count)
        var total = 0
        for (index, value) in values.enumerated() {
            offsets.append(total)
            total += try byteCount(of: value, parameter: index + 1)
            total = (total + 7) & ~7
        }
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(total, 8), alignment: 8)
        defer { storage.deallocate() }
        let binds = UnsafeMutablePointer<MYSQL_BIND>.allocate(capacity: count)
        binds.initialize(repeating: MYSQL_BIND(), count: count)
        defer { binds.deallocate() }
        for (index, value) in values.enumerated() {
            bind(value, into: &binds[index], at: storage + offsets[index])
        }
        guard mysql_stmt_bind_param(statement.handle, binds) == 0 else { throw bindingError(statement) }
        return try body()
    }

    /// Connector/C's refusal of the values bound to `statement`.
    static func bindingError(_ statement: MariaDBPreparedStatement) -> MariaDBError {
        MariaDBError(
            kind: .client,
            number: mysql_stmt_errno(statement.handle),
            sqlState: String(cString: mysql_stmt_sqlstate(statement.handle)),
            message: String(cString: mysql_stmt_error(statement.handle)),
            query: statement.sql
        )
    }

    /// The bytes `value` needs in the bound block.
    private static func byteCount(of value: SQLValue, parameter: Int) throws -> Int {
        switch value {
        case .null: return 0
        case .bool, .int, .uint, .float, .double: return 8
        case .decimal(let text), .text(let text): return text.utf8.count
        case .bytes(let bytes), .json(let bytes): return bytes.count
        case .uuid: return 36
        case .timestamp, .date, .time: return MemoryLayout<MYSQL_TIME>.size
        case .array:
            throw SQLEncodingError(
                parameter: parameter,
                reason: "MariaDB has no array type; bind the elements one by one or send them as JSON"
            )
        }
    }

    /// Fills `bind` for `value`, copying the value to `memory`.
    private static func bind(_ value: SQLValue, into bind: inout MYSQL_BIND, at memory: UnsafeMutableRawPointer) {
        func bytes(_ type: enum_field_types, _ source: UnsafeBufferPointer<UInt8>) {
            if let base = source.baseAddress { memory.copyMemory(from: base, byteCount: source.count) }
            bind.buffer_type = type
            bind.buffer = memory
            bind.buffer_length = UInt(source.count)
        }
        func text(_ type: enum_field_types, _ text: String) {
            var text = text
            text.withUTF8 { bytes(type, $0) }
        }
        func fixed<Value>(_ type: enum_field_types, _ value: Value) {
            memory.storeBytes(of: value, as: Value.self)
            bind.buffer_type = type
            bind.buffer = memory
        }
        switch value {
        case .null:
            bind.buffer_type = MYSQL_TYPE_NULL
        case .bool(let bool):
            fixed(MYSQL_TYPE_TINY, Int8(bool ? 1 : 0))
        case .int(let int):
            fixed(MYSQL_TYPE_LONGLONG, int)
        case .uint(let uint):
            fixed(MYSQL_TYPE_LONGLONG, uint)
            bind.is_unsigned = 1
        case .float(let float):
            fixed(MYSQL_TYPE_FLOAT, float)
        case .double(let double):
            fixed(MYSQL_TYPE_DOUBLE, double)
        case .decimal(let decimal):
            text(MYSQL_TYPE_NEWDECIMAL, decimal)
        case .text(let string):
            text(MYSQL_TYPE_STRING, string)
        case .bytes(let data):
            data.withUnsafeBufferPointer { bytes(MYSQL_TYPE_BLOB, $0) }
        case .json(let data):
            data.withUnsafeBufferPointer { bytes(MYSQL_TYPE_STRING, $0) }
        case .uuid(let uuid):
            text(MYSQL_TYPE_STRING, uuid.uuidString.lowercased())
        case .timestamp(let date):
            fixed(MYSQL_TYPE_DATETIME, MariaDBTime.time(from: date, type: MYSQL_TIMESTAMP_DATETIME))
        case .date(let date):
            fixed(MYSQL_TYPE_DATE, MariaDBTime.time(from: date, type: MYSQL_TIMESTAMP_DATE))
        case .time(let duration):
            fixed(MYSQL_TYPE_TIME, MariaDBTime.time(from: duration))
        case .array:
            preconditionFailure("arrays are refused by byteCount(of:parameter:)")
        }
    }
}

/// Conversions between `MYSQL_TIME` and Swift's dates and durations, in UTC.
enum MariaDBTime {
    private static let microsecondsPerDay: Int64 = 86_400_000_000

    /// A `DATE`, `DATETIME`/`TIMESTAMP` or `TIME` value. Zero dates (`0000-00-00`), which strict
    /// mode refuses but old data may hold, come back as text so that decoding them as `Date`
    /// fails with the column's name.
    static func value(_ time: MYSQL_TIME, category: MariaDBColumnCategory) -> SQLValue {
        if category == .time {
            let hours = Int64(time.day) * 24 + Int64(time.hour)
            var microseconds = ((hours * 60 + Int64(time.minute)) * 60 + Int64(time.second)) * 1_000_000
            microseconds += Int64(time.second_part)
            return .time(.microseconds(time.neg != 0 ? -microseconds : microseconds))
        }
        guard time.month != 0 && time.day != 0 else {
            let text = "\(pad(time.year, 4))-\(pad(time.month, 2))-\(pad(time.day, 2))"
            return .text(
                category == .date ? text : text + " \(pad(time.hour, 2)):\(pad(time.minute, 2)):\(pad(time.second, 2))"
            )
        }
        let days = Int64(CivilTime.days(year: Int(time.year), month: Int(time.month), day: Int(time.day)))
        if category == .date {
            return .date(CivilTime.date(microseconds: days * microsecondsPerDay))
        }
        let seconds = (Int64(time.hour) * 60 + Int64(time.minute)) * 60 + Int64(time.second)
        let microseconds = days * microsecondsPerDay + seconds * 1_000_000 + Int64(time.second_part)
        return .timestamp(CivilTime.date(microseconds: microseconds))
    }

    /// `date` in UTC, as a `DATETIME` (to the microsecond) or a `DATE`.
    static func time(from date: Date, type: enum_mysql_timestamp_type) -> MYSQL_TIME {
        let microseconds = CivilTime.microseconds(of: date)
        let (days, remainder) = floorDivision(microseconds, microsecondsPerDay)
        let (year, month, day) = CivilTime.date(days: Int(days))
        var time = MYSQL_TIME()
        time.year = UInt32(clamping: year)
        time.month = UInt32(month)
        time.day = UInt32(day)
        time.time_type = type
        if type == MYSQL_TIMESTAMP_DATETIME {
            let seconds = remainder / 1_000_000
            time.hour = UInt32(seconds / 3600)
            time.minute = UInt32(seconds / 60 % 60)
            time.second = UInt32(seconds % 60)
            time.second_part = UInt(remainder % 1_000_000)
        }
        return time
    }

    /// `duration` as a `TIME` (hours may exceed 24; negative durations are negative times).
    static func time(from duration: Duration) -> MYSQL_TIME {
        let total = duration.microsecondCount
        let magnitude = total.magnitude
        var time = MYSQL_TIME()
        time.neg = total < 0 ? 1 : 0
        time.hour = UInt32(clamping: magnitude / 3_600_000_000)
        time.minute = UInt32(magnitude / 60_000_000 % 60)
        time.second = UInt32(magnitude / 1_000_000 % 60)
        time.second_part = UInt(magnitude % 1_000_000)
        time.time_type = MYSQL_TIMESTAMP_TIME
        return time
    }

    /// `time` as the text MariaDB reads: `YYYY-MM-DD`, `YYYY-MM-DD hh:mm:ss.ffffff` or
    /// `[-]hhh:mm:ss.ffffff`.
    static func text(of time: MYSQL_TIME) -> String {
        let clock =
            "\(pad(time.hour, 2)):\(pad(time.minute, 2)):\(pad(time.second, 2)).\(pad(UInt32(time.second_part), 6))"
        switch time.time_type {
        case MYSQL_TIMESTAMP_DATE:
            return "\(pad(time.year, 4))-\(pad(time.month, 2))-\(pad(time.day, 2))"
        case MYSQL_TIMESTAMP_TIME:
            return (time.neg != 0 ? "-" : "") + clock
        default:
            return "\(pad(time.year, 4))-\(pad(time.month, 2))-\(pad(time.day, 2)) " + clock
        }
    }

    private static func floorDivision(_ value: Int64, _ divisor: Int64) -> (Int64, Int64) {
        var quotient = value / divisor
        var remainder = value % divisor
        if remainder < 0 {
            quotient -= 1
            remainder += divisor
        }
        return (quotient, remainder)
    }

    private static func pad(_ value: UInt32, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }
}
