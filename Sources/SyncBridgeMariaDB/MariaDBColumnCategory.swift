import CMariaDB
import FoundationEssentials
import SyncBridgeSQL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How a result column is read and what ``SQLValue`` it becomes.
enum MariaDBColumnCategory: Equatable {
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

    /// `bytes` as a string when they are valid UTF-8, else `nil`.
    ///
    /// Faster than `String(validating:as:)`, which is not specialised here and looks up generic
    /// metadata for every value: ASCII, the usual case, is checked eight bytes at a time; other
    /// text is decoded and compared with what came, since decoding leaves valid UTF-8 as it is
    /// and replaces every invalid sequence with U+FFFD (whose own bytes are valid).
    static func utf8String(_ bytes: UnsafeRawBufferPointer) -> String? {
        let text = String(decoding: bytes, as: UTF8.self)
        if isASCII(bytes) { return text }
        return text.utf8.elementsEqual(bytes) ? text : nil
    }

    private static func isASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        var high: UInt64 = 0
        while index + 8 <= bytes.count {
            high |= bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            index += 8
        }
        while index < bytes.count {
            high |= UInt64(bytes[index])
            index += 1
        }
        return high & 0x8080_8080_8080_8080 == 0
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
            if let text = Self.utf8String(bytes) { return .text(text) }
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
