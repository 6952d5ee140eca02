public import FoundationEssentials

/// A Swift type that can be sent as a query parameter.
public protocol SQLEncodable: Sendable {
    /// The value to send.
    var sqlValue: SQLValue { get }
}

/// A Swift type that can be read from a result column.
public protocol SQLDecodable {
    /// Decodes a value from `column`.
    /// - Throws: ``SQLDecodingError`` naming the column, its database type and `Self`.
    static func decode(from value: SQLValue, column: SQLColumn) throws -> Self
}

/// A type that can be both sent and read.
public typealias SQLCodable = SQLEncodable & SQLDecodable

extension SQLValue: SQLCodable {
    /// The value itself: interpolate an explicit ``SQLValue`` to choose how a value is sent, such
    /// as `\(SQLValue.date(day))` for a calendar date or `\(SQLValue.decimal("1.50"))`.
    public var sqlValue: SQLValue { self }

    /// The column's value as the facade read it, undecoded.
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> SQLValue { value }
}

extension SQLDecodable {
    /// The error for a value of the wrong kind.
    static func mismatch(_ value: SQLValue, _ column: SQLColumn) -> SQLDecodingError {
        if case .null = value {
            return SQLDecodingError(
                column: column,
                swiftType: Self.self,
                reason: "the value is NULL; decode an Optional to accept NULL"
            )
        }
        return SQLDecodingError(
            column: column,
            swiftType: Self.self,
            reason: "a \(value.kindName) value cannot be decoded as this type"
        )
    }
}

// MARK: Optional

extension Optional: SQLEncodable where Wrapped: SQLEncodable {
    /// The wrapped value, or `NULL`.
    public var sqlValue: SQLValue { self?.sqlValue ?? .null }
}

extension Optional: SQLDecodable where Wrapped: SQLDecodable {
    /// `nil` for `NULL`, the wrapped type's decoding otherwise.
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> Self {
        if case .null = value { return nil }
        return try Wrapped.decode(from: value, column: column)
    }
}

// MARK: Bool

extension Bool: SQLCodable {
    /// `.bool`.
    public var sqlValue: SQLValue { .bool(self) }

    /// From a boolean, or from the integers 0 and 1 (MariaDB's `BOOLEAN` is `TINYINT(1)`).
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> Bool {
        switch value {
        case .bool(let bool): return bool
        case .int(0), .uint(0): return false
        case .int(1), .uint(1): return true
        case .int(let other):
            throw SQLDecodingError(column: column, swiftType: Bool.self, reason: "\(other) is neither 0 nor 1")
        case .uint(let other):
            throw SQLDecodingError(column: column, swiftType: Bool.self, reason: "\(other) is neither 0 nor 1")
        default: throw mismatch(value, column)
        }
    }
}

// MARK: Integers

extension SQLDecodable where Self: FixedWidthInteger {
    /// From a signed or unsigned integer that fits; anything that does not fit is an error, never
    /// a wrap or a truncation.
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> Self {
        switch value {
        case .int(let int):
            guard let exact = Self(exactly: int) else {
                throw SQLDecodingError(
                    column: column,
                    swiftType: Self.self,
                    reason: "\(int) does not fit (\(Self.min)...\(Self.max))"
                )
            }
            return exact
        case .uint(let uint):
            guard let exact = Self(exactly: uint) else {
                throw SQLDecodingError(
                    column: column,
                    swiftType: Self.self,
                    reason: "\(uint) does not fit (\(Self.min)...\(Self.max))"
                )
            }
            return exact
        default:
            throw mismatch(value, column)
        }
    }
}

extension Int8: SQLCodable {
    /// `.int`.
    public var sqlValue: SQLValue { .int(Int64(self)) }
}

extension Int16: SQLCodable {
    /// `.int`.
    public var sqlValue: SQLValue { .int(Int64(self)) }
}

extension Int32: SQLCodable {
    /// `.int`.
    public var sqlValue: SQLValue { .int(Int64(self)) }
}

extension Int64: SQLCodable {
    /// `.int`.
    public var sqlValue: SQLValue { .int(self) }
}

extension Int: SQLCodable {
    /// `.int`.
    public var sqlValue: SQLValue { .int(Int64(self)) }
}

extension UInt8: SQLCodable {
    /// `.uint`.
    public var sqlValue: SQLValue { .uint(UInt64(self)) }
}

extension UInt16: SQLCodable {
    /// `.uint`.
    public var sqlValue: SQLValue { .uint(UInt64(self)) }
}

extension UInt32: SQLCodable {
    /// `.uint`.
    public var sqlValue: SQLValue { .uint(UInt64(self)) }
}

extension UInt64: SQLCodable {
    /// `.uint`.
    public var sqlValue: SQLValue { .uint(self) }
}

extension UInt: SQLCodable {
    /// `.uint`.
    public var sqlValue: SQLValue { .uint(UInt64(self)) }
}

// MARK: Floating point

extension Float: SQLCodable {
    /// `.float`.
    public var sqlValue: SQLValue { .float(self) }

    /// From a single-precision column only: narrowing a double would lose precision silently.
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> Float {
        guard case .float(let float) = value else { throw mismatch(value, column) }
        return float
    }
}

extension Double: SQLCodable {
    /// `.double`.
    public var sqlValue: SQLValue { .double(self) }

    /// From a double- or single-precision column.
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> Double {
        switch value {
        case .double(let double): return double
        case .float(let float): return Double(float)
        default: throw mismatch(value, column)
        }
    }
}

// MARK: Decimal

extension Decimal: SQLCodable {
    /// `.decimal`, in its exact text form.
    public var sqlValue: SQLValue { .decimal(description) }

    /// From an exact decimal column. Foundation's `Decimal` holds 38 significant digits; a value
    /// with more is an error, never a rounding.
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> Decimal {
        guard case .decimal(let text) = value else { throw mismatch(value, column) }
        guard let decimal = Decimal(string: text, locale: nil), decimal.isFinite else {
            throw SQLDecodingError(column: column, swiftType: Decimal.self, reason: "'\(text)' is not a finite number")
        }
        guard decimalDigits(text) == decimalDigits(decimal.description) else {
            throw SQLDecodingError(
                column: column,
                swiftType: Decimal.self,
                reason: "\(text) has more significant digits than Decimal holds (38); decode it as String"
            )
        }
        return decimal
    }

    /// The significant digits and the sign of a decimal text, without leading or trailing zeros,
    /// so that `1.50` and `1.5` compare equal.
    private static func decimalDigits(_ text: String) -> String {
        let negative = text.hasPrefix("-")
        let parts = text.drop { $0 == "-" || $0 == "+" }.split(separator: ".", maxSplits: 1)
        let integer = parts.first.map { String($0.drop { $0 == "0" }) } ?? ""
        var fraction = parts.count > 1 ? String(parts[1]) : ""
        while fraction.last == "0" { fraction.removeLast() }
        let digits = integer + "." + fraction
        return digits == "." ? "0" : (negative ? "-" : "") + digits
    }
}

// MARK: Text

extension String: SQLCodable {
    /// `.text`.
    public var sqlValue: SQLValue { .text(self) }

    /// From text, exact decimal text, JSON, or bytes that are valid UTF-8 (anything else is an
    /// error, never a replacement character).
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> String {
        switch value {
        case .text(let text), .decimal(let text):
            return text
        case .json(let bytes), .bytes(let bytes):
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw SQLDecodingError(column: column, swiftType: String.self, reason: "the bytes are not valid UTF-8")
            }
            return text
        default:
            throw mismatch(value, column)
        }
    }
}

// MARK: Bytes

extension Data: SQLCodable {
    /// `.bytes`.
    public var sqlValue: SQLValue { .bytes([UInt8](self)) }

    /// From bytes.
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> Data {
        guard case .bytes(let bytes) = value else { throw mismatch(value, column) }
        return Data(bytes)
    }
}

// MARK: UUID, dates

extension UUID: SQLCodable {
    /// `.uuid`.
    public var sqlValue: SQLValue { .uuid(self) }

    /// From a UUID column, or text holding a UUID (MariaDB's `UUID` type arrives as text).
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> UUID {
        switch value {
        case .uuid(let uuid): return uuid
        case .text(let text):
            guard let uuid = UUID(uuidString: text) else {
                throw SQLDecodingError(column: column, swiftType: UUID.self, reason: "'\(text)' is not a UUID")
            }
            return uuid
        default: throw mismatch(value, column)
        }
    }
}

extension Date: SQLCodable {
    /// `.timestamp`.
    public var sqlValue: SQLValue { .timestamp(self) }

    /// From a timestamp, or a date (midnight UTC).
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> Date {
        switch value {
        case .timestamp(let date), .date(let date): return date
        default: throw mismatch(value, column)
        }
    }
}

extension Duration: SQLDecodable {
    /// From a time of day (`TIME`), as the duration since midnight.
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> Duration {
        guard case .time(let duration) = value else { throw mismatch(value, column) }
        return duration
    }
}

// MARK: Arrays

/// A type whose arrays can be sent and read (PostgreSQL arrays). `[UInt8]` is the exception:
/// it is bytes (`bytea`, `BLOB`), not an array of small integers.
public protocol SQLArrayElement: SQLCodable {
    /// How an array of this type is sent: `.array` of the elements by default.
    static func sqlValue(ofArray elements: [Self]) -> SQLValue
    /// How an array of this type is read: from `.array` by default.
    static func decodeArray(from value: SQLValue, column: SQLColumn) throws -> [Self]
}

extension SQLArrayElement {
    /// `.array` of the elements' values.
    public static func sqlValue(ofArray elements: [Self]) -> SQLValue {
        .array(elements.map(\.sqlValue))
    }

    /// Each element of an `.array`, decoded.
    public static func decodeArray(from value: SQLValue, column: SQLColumn) throws -> [Self] {
        guard case .array(let elements) = value else {
            if case .null = value {
                throw SQLDecodingError(
                    column: column,
                    swiftType: [Self].self,
                    reason: "the value is NULL; decode an Optional to accept NULL"
                )
            }
            throw SQLDecodingError(
                column: column,
                swiftType: [Self].self,
                reason: "a \(value.kindName) value cannot be decoded as an array"
            )
        }
        return try elements.map { try Self.decode(from: $0, column: column) }
    }
}

extension UInt8: SQLArrayElement {
    /// `[UInt8]` is sent as bytes.
    public static func sqlValue(ofArray elements: [UInt8]) -> SQLValue { .bytes(elements) }

    /// `[UInt8]` is read from bytes.
    public static func decodeArray(from value: SQLValue, column: SQLColumn) throws -> [UInt8] {
        guard case .bytes(let bytes) = value else { throw [UInt8].mismatch(value, column) }
        return bytes
    }
}

extension Bool: SQLArrayElement {}
extension Int16: SQLArrayElement {}
extension Int32: SQLArrayElement {}
extension Int64: SQLArrayElement {}
extension Int: SQLArrayElement {}
extension Float: SQLArrayElement {}
extension Double: SQLArrayElement {}
extension Decimal: SQLArrayElement {}
extension String: SQLArrayElement {}
extension UUID: SQLArrayElement {}
extension Date: SQLArrayElement {}
extension Optional: SQLArrayElement where Wrapped: SQLArrayElement {}

extension Array: SQLEncodable where Element: SQLArrayElement {
    /// As ``SQLArrayElement/sqlValue(ofArray:)`` says: an array, or bytes for `[UInt8]`.
    public var sqlValue: SQLValue { Element.sqlValue(ofArray: self) }
}

extension Array: SQLDecodable where Element: SQLArrayElement {
    /// As ``SQLArrayElement/decodeArray(from:column:)`` says.
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> [Element] {
        try Element.decodeArray(from: value, column: column)
    }
}

// MARK: JSON

/// A `Codable` value stored as JSON (`json`, `jsonb`, MariaDB's `JSON`).
///
/// ```swift
/// try await db.execute("INSERT INTO settings (doc) VALUES (\(try SQLJSON(settings)))")
/// let settings = try row.decode(SQLJSON<Settings>.self, named: "doc").value
/// ```
public struct SQLJSON<Value: Codable & Sendable>: SQLCodable {
    /// The value.
    public let value: Value
    /// Its JSON encoding, UTF-8.
    public let json: [UInt8]

    /// Wraps a value, encoding it right away so that an encoding failure is an error here rather
    /// than a lost parameter later.
    /// - Throws: What `JSONEncoder` throws.
    public init(_ value: Value, encoder: JSONEncoder = JSONEncoder()) throws {
        self.value = value
        self.json = [UInt8](try encoder.encode(value))
    }

    private init(value: Value, json: [UInt8]) {
        self.value = value
        self.json = json
    }

    /// `.json`.
    public var sqlValue: SQLValue { .json(json) }

    /// From JSON or text holding JSON.
    public static func decode(from value: SQLValue, column: SQLColumn) throws -> SQLJSON<Value> {
        let bytes: [UInt8]
        switch value {
        case .json(let json): bytes = json
        case .text(let text): bytes = Array(text.utf8)
        default: throw mismatch(value, column)
        }
        do {
            return SQLJSON(value: try JSONDecoder().decode(Value.self, from: Data(bytes)), json: bytes)
        } catch {
            throw SQLDecodingError(
                column: column,
                swiftType: Value.self,
                reason: "invalid JSON for this type: \(error)"
            )
        }
    }
}
