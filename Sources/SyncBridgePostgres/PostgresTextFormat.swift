import FoundationEssentials
import SyncBridge
import SyncBridgeSQL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// PostgreSQL's text format: how parameters are sent and results read.
///
/// Results are read in text format, which every type has and whose numeric text is exact;
/// each value is turned into a ``SQLValue`` according to its column's type OID. Parameters go as
/// text too, except bytes, which go in binary so that a 10 MB `bytea` is neither escaped nor
/// copied twice.
enum PostgresTextFormat {
    // MARK: Type OIDs

    enum OID {
        static let unknown: UInt32 = 0
        static let bool: UInt32 = 16
        static let bytea: UInt32 = 17
        static let int8: UInt32 = 20
        static let int2: UInt32 = 21
        static let int4: UInt32 = 23
        static let oid: UInt32 = 26
        static let text: UInt32 = 25
        static let name: UInt32 = 19
        static let bpchar: UInt32 = 1042
        static let varchar: UInt32 = 1043
        static let float4: UInt32 = 700
        static let float8: UInt32 = 701
        static let numeric: UInt32 = 1700
        static let uuid: UInt32 = 2950
        static let date: UInt32 = 1082
        static let time: UInt32 = 1083
        static let timestamp: UInt32 = 1114
        static let timestamptz: UInt32 = 1184
        static let json: UInt32 = 114
        static let jsonb: UInt32 = 3802
    }

    /// Names of the types SyncBridge knows, for column descriptions and errors.
    static let typeNames: [UInt32: String] = [
        16: "bool", 17: "bytea", 18: "char", 19: "name", 20: "int8", 21: "int2", 23: "int4", 25: "text",
        26: "oid", 114: "json", 700: "float4", 701: "float8", 1042: "bpchar", 1043: "varchar", 1082: "date",
        1083: "time", 1114: "timestamp", 1184: "timestamptz", 1186: "interval", 1266: "timetz", 1700: "numeric",
        2950: "uuid", 3802: "jsonb", 199: "json[]", 1000: "bool[]", 1001: "bytea[]", 1005: "int2[]",
        1007: "int4[]", 1009: "text[]", 1014: "bpchar[]", 1015: "varchar[]", 1016: "int8[]", 1021: "float4[]",
        1022: "float8[]", 1028: "oid[]", 1115: "timestamp[]", 1182: "date[]", 1183: "time[]",
        1185: "timestamptz[]", 1231: "numeric[]", 2951: "uuid[]", 3807: "jsonb[]",
    ]

    /// The element type of the array types SyncBridge knows.
    static let arrayElements: [UInt32: UInt32] = [
        199: OID.json, 1000: OID.bool, 1001: OID.bytea, 1005: OID.int2, 1007: OID.int4, 1009: 25, 1014: 1042,
        1015: 1043, 1016: OID.int8, 1021: OID.float4, 1022: OID.float8, 1028: OID.oid, 1115: OID.timestamp,
        1182: OID.date, 1183: OID.time, 1185: OID.timestamptz, 1231: OID.numeric, 2951: OID.uuid,
        3807: OID.jsonb,
    ]

    static func typeName(_ oid: UInt32) -> String {
        typeNames[oid] ?? "oid \(oid)"
    }

    // MARK: Reading

    /// The value of one result cell of type `oid`, from its text.
    static func value(oid: UInt32, text: UnsafeRawBufferPointer) -> SQLValue {
        switch oid {
        case OID.bool:
            return text.count == 1 && text[0] == UInt8(ascii: "t") ? .bool(true) : .bool(false)
        case OID.int2, OID.int4, OID.int8, OID.oid:
            return integer(text).map(SQLValue.int) ?? .text(string(text))
        case OID.float4:
            return parseFloat(string(text)).map { .float(Float($0)) } ?? .text(string(text))
        case OID.float8:
            return parseFloat(string(text)).map(SQLValue.double) ?? .text(string(text))
        case OID.numeric:
            return .decimal(string(text))
        case OID.bytea:
            return decodeHexBytea(text).map(SQLValue.bytes) ?? .text(string(text))
        case OID.uuid:
            return UUID(uuidString: string(text)).map(SQLValue.uuid) ?? .text(string(text))
        case OID.date:
            let string = string(text)
            return CivilTime.parseTimestamp(Substring(string)).map { .date(CivilTime.date(microseconds: $0)) }
                ?? .text(string)
        case OID.timestamp, OID.timestamptz:
            let string = string(text)
            return CivilTime.parseTimestamp(Substring(string)).map { .timestamp(CivilTime.date(microseconds: $0)) }
                ?? .text(string)
        case OID.time:
            let string = string(text)
            return CivilTime.parseTime(Substring(string)).map { .time(.microseconds($0)) } ?? .text(string)
        case OID.json, OID.jsonb:
            return .json(Array(text))
        case OID.text, OID.varchar, OID.bpchar, OID.name:
            // The usual text columns, before the array types' table is searched.
            return .text(string(text))
        default:
            if let element = arrayElements[oid] {
                return parseArray(string(text), element: element) ?? .text(string(text))
            }
            return .text(string(text))
        }
    }

    /// A decimal integer (an optional `-`, then digits) read straight from its bytes; `nil` for
    /// anything else or a value outside `Int64`.
    static func integer(_ text: UnsafeRawBufferPointer) -> Int64? {
        guard let first = text.first else { return nil }
        let negative = first == UInt8(ascii: "-")
        let digits = negative ? text.dropFirst() : text[...]
        guard !digits.isEmpty else { return nil }
        // Accumulated negatively: Int64.min has no positive counterpart.
        var value: Int64 = 0
        for byte in digits {
            let digit = Int64(byte) - Int64(UInt8(ascii: "0"))
            guard digit >= 0 && digit <= 9 else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = times10.subtractingReportingOverflow(digit)
            guard !overflow1 && !overflow2 else { return nil }
            value = next
        }
        if negative { return value }
        return value == .min ? nil : -value
    }

    private static func string(_ text: UnsafeRawBufferPointer) -> String {
        String(decoding: text, as: UTF8.self)
    }

    private static func parseFloat(_ text: String) -> Double? {
        switch text {
        case "NaN": .nan
        case "Infinity": .infinity
        case "-Infinity": -.infinity
        default: Double(text)
        }
    }

    /// `\x0a1b…` → bytes.
    private static func decodeHexBytea(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
        guard text.count >= 2, text[0] == UInt8(ascii: "\\"), text[1] == UInt8(ascii: "x"), text.count % 2 == 0 else {
            return nil
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity((text.count - 2) / 2)
        var index = 2
        while index < text.count {
            guard let high = hexDigit(text[index]), let low = hexDigit(text[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Parses an array literal (`{1,2,NULL}`, `{"a b","c\"d"}`, `{{1,2},{3,4}}`).
    static func parseArray(_ text: String, element: UInt32) -> SQLValue? {
        var bytes = Array(text.utf8)[...]
        // Arrays with explicit bounds start with `[1:2]=`.
        if bytes.first == UInt8(ascii: "["), let equals = bytes.firstIndex(of: UInt8(ascii: "=")) {
            bytes = bytes[(equals + 1)...]
        }
        var position = bytes.startIndex
        let value = parseArrayLevel(bytes, &position, element: element)
        return position == bytes.endIndex ? value : nil
    }

    private static func parseArrayLevel(_ bytes: ArraySlice<UInt8>, _ position: inout Int, element: UInt32) -> SQLValue?
    {
        guard position < bytes.endIndex, bytes[position] == UInt8(ascii: "{") else { return nil }
        position += 1
        var elements: [SQLValue] = []
        if position < bytes.endIndex, bytes[position] == UInt8(ascii: "}") {
            position += 1
            return .array([])
        }
        while position < bytes.endIndex {
            if bytes[position] == UInt8(ascii: "{") {
                guard let nested = parseArrayLevel(bytes, &position, element: element) else { return nil }
                elements.append(nested)
            } else if bytes[position] == UInt8(ascii: "\"") {
                position += 1
                var item = [UInt8]()
                while position < bytes.endIndex, bytes[position] != UInt8(ascii: "\"") {
                    if bytes[position] == UInt8(ascii: "\\") { position += 1 }
                    guard position < bytes.endIndex else { return nil }
                    item.append(bytes[position])
                    position += 1
                }
                guard position < bytes.endIndex else { return nil }
                position += 1
                elements.append(item.withUnsafeBytes { value(oid: element, text: $0) })
            } else {
                let start = position
                while position < bytes.endIndex, bytes[position] != UInt8(ascii: ","),
                    bytes[position] != UInt8(ascii: "}")
                {
                    position += 1
                }
                let item = Array(bytes[start..<position])
                if item == Array("NULL".utf8) {
                    elements.append(.null)
                } else {
                    elements.append(item.withUnsafeBytes { value(oid: element, text: $0) })
                }
            }
            guard position < bytes.endIndex else { return nil }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
            } else if bytes[position] == UInt8(ascii: "}") {
                position += 1
                return .array(elements)
            } else {
                return nil
            }
        }
        return nil
    }

    // MARK: Writing

    /// A parameter ready for `PQexecParams`/`PQexecPrepared`.
    struct Parameter {
        /// The type OID; 0 lets the server infer it from the statement.
        var oid: UInt32
        /// The bytes (text or binary); `nil` for NULL.
        var bytes: [UInt8]?
        /// 0 for text, 1 for binary.
        var format: Int32
    }

    /// Encodes parameter `index` (from 1).
    /// - Throws: ``SQLEncodingError`` for text holding a NUL byte, which PostgreSQL text cannot.
    static func parameter(_ value: SQLValue, index: Int) throws -> Parameter {
        switch value {
        case .null:
            return Parameter(oid: OID.unknown, bytes: nil, format: 0)
        case .bytes(let bytes):
            return Parameter(oid: OID.bytea, bytes: bytes, format: 1)
        case .uint(let uint) where uint > UInt64(Int64.max):
            return Parameter(oid: OID.numeric, bytes: Array(String(uint).utf8), format: 0)
        default:
            let (oid, text) = try literal(value, index: index)
            return Parameter(oid: oid, bytes: Array(text.utf8), format: 0)
        }
    }

    /// Whether `text` holds a NUL byte: one `memchr` over a native string's bytes (a text
    /// parameter may be megabytes long, and is encoded on an I/O thread).
    private static func containsNUL(_ text: String) -> Bool {
        text.utf8.withContiguousStorageIfAvailable { bytes in
            guard let start = bytes.baseAddress else { return false }
            return memchr(start, 0, bytes.count) != nil
        } ?? text.utf8.contains(0)
    }

    /// The text form of a value and the type OID to send it as.
    private static func literal(_ value: SQLValue, index: Int) throws -> (UInt32, String) {
        switch value {
        case .null: return (OID.unknown, "NULL")
        case .bool(let bool): return (OID.bool, bool ? "t" : "f")
        case .int(let int): return (integerType(magnitudeFits: Int32(exactly: int) != nil), String(int))
        case .uint(let uint):
            if uint > UInt64(Int64.max) { return (OID.numeric, String(uint)) }
            return (integerType(magnitudeFits: Int32(exactly: uint) != nil), String(uint))
        case .float(let float): return (OID.float4, floatText(Double(float), float.description))
        case .double(let double): return (OID.float8, floatText(double, double.description))
        case .decimal(let text): return (OID.numeric, text)
        case .text(let text):
            guard !containsNUL(text) else {
                throw SQLEncodingError(
                    parameter: index,
                    reason: "the text contains a NUL byte, which PostgreSQL text cannot hold; send it as bytes"
                )
            }
            // Unknown: the server infers the type from the statement, so a string works for
            // text, varchar, uuid, enum, date… columns alike.
            return (OID.unknown, text)
        case .bytes(let bytes):
            return (
                OID.bytea,
                "\\x"
                    + bytes.map { byte in
                        let digits = Array("0123456789abcdef")
                        return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
                    }.joined()
            )
        case .uuid(let uuid): return (OID.uuid, uuid.uuidString.lowercased())
        case .timestamp(let date): return (OID.timestamptz, CivilTime.format(date) + "+00")
        case .date(let date): return (OID.date, CivilTime.format(date, includeTime: false))
        case .time(let duration):
            return (OID.time, CivilTime.formatTime(microseconds: duration.microsecondCount))
        case .json(let bytes):
            guard !bytes.contains(0) else {
                throw SQLEncodingError(parameter: index, reason: "the JSON contains a NUL byte")
            }
            return (OID.unknown, String(decoding: bytes, as: UTF8.self))
        case .array(let elements):
            return (OID.unknown, try arrayLiteral(elements, index: index))
        }
    }

    /// Integers are typed as PostgreSQL types integer literals: `int4` when they fit, else `int8`,
    /// so that `pg_terminate_backend(\(pid))` and `WHERE int8_column = \(id)` both work.
    private static func integerType(magnitudeFits fitsInt4: Bool) -> UInt32 {
        fitsInt4 ? OID.int4 : OID.int8
    }

    private static func floatText(_ value: Double, _ description: String) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
        return description
    }

    /// `{"a","b",NULL}`: every element quoted and escaped, so no element can break out.
    private static func arrayLiteral(_ elements: [SQLValue], index: Int) throws -> String {
        var text = "{"
        for (position, element) in elements.enumerated() {
            if position > 0 { text += "," }
            switch element {
            case .null:
                text += "NULL"
            case .array(let nested):
                text += try arrayLiteral(nested, index: index)
            default:
                let (_, literal) = try literal(element, index: index)
                text += "\""
                for character in literal.unicodeScalars {
                    if character == "\"" || character == "\\" { text += "\\" }
                    text.unicodeScalars.append(character)
                }
                text += "\""
            }
        }
        return text + "}"
    }
}
