public import FoundationEssentials

/// One value on its way to or from a database, in a form both facades share: each facade turns
/// its wire format (PostgreSQL's text protocol, MariaDB's binary protocol) into these cases and
/// back, and every Swift type encodes and decodes itself from them once, for both databases.
public enum SQLValue: Sendable, Hashable {
    /// SQL `NULL`.
    case null
    /// A boolean.
    case bool(Bool)
    /// A signed integer of any width.
    case int(Int64)
    /// An unsigned integer of any width (MariaDB's `UNSIGNED` columns).
    case uint(UInt64)
    /// A single-precision float.
    case float(Float)
    /// A double-precision float.
    case double(Double)
    /// An exact decimal number, in its canonical text form (`-12.340`): kept as text so that no
    /// digit is lost on the way.
    case decimal(String)
    /// Text.
    case text(String)
    /// Bytes.
    case bytes([UInt8])
    /// A UUID.
    case uuid(UUID)
    /// A point in time (`timestamp`, `timestamptz`, `DATETIME`, `TIMESTAMP`), in UTC.
    case timestamp(Date)
    /// A calendar date (`DATE`), as midnight UTC of that day.
    case date(Date)
    /// A time of day (`TIME`), as a duration since midnight; MariaDB's `TIME` may be negative or
    /// exceed 24 hours.
    case time(Duration)
    /// A JSON document, as UTF-8 bytes.
    case json([UInt8])
    /// An array of values (PostgreSQL arrays).
    case array([SQLValue])

    /// The case's name, for error messages: `int`, `text`, `null`…
    public var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "bool"
        case .int: "int"
        case .uint: "uint"
        case .float: "float"
        case .double: "double"
        case .decimal: "decimal"
        case .text: "text"
        case .bytes: "bytes"
        case .uuid: "uuid"
        case .timestamp: "timestamp"
        case .date: "date"
        case .time: "time"
        case .json: "json"
        case .array: "array"
        }
    }
}

/// A result column: its position, its name and the database's name for its type.
public struct SQLColumn: Sendable, Hashable, CustomStringConvertible {
    /// The column's position, from 0.
    public let index: Int
    /// The column's name as the server reports it.
    public let name: String
    /// The database's name for the column's type (`int4`, `numeric`, `VARCHAR`…).
    public let databaseType: String

    /// Creates a column description.
    public init(index: Int, name: String, databaseType: String) {
        self.index = index
        self.name = name
        self.databaseType = databaseType
    }

    /// `"name" (column 2, int4)`.
    public var description: String { "\"\(name)\" (column \(index), \(databaseType))" }
}
