import FoundationEssentials
import SyncBridgeSQL
import Testing

@Suite("SQLQuery")
struct SQLQueryTests {
    @Test("interpolated values become numbered parameters, never text")
    func binds() {
        let name = "Robert'); DROP TABLE students;--"
        let id = 42
        let query: SQLQuery = "SELECT * FROM students WHERE name = \(name) AND id > \(id) OR nick = \(name)"
        #expect(query.render { "$\($0)" } == "SELECT * FROM students WHERE name = $1 AND id > $2 OR nick = $3")
        #expect(query.render { _ in "?" } == "SELECT * FROM students WHERE name = ? AND id > ? OR nick = ?")
        #expect(query.bindings == [.text(name), .int(42), .text(name)])
        #expect(!query.description.contains("DROP"))
    }

    @Test("nil becomes NULL; nested queries keep their parameters, renumbered")
    func nesting() {
        let missing: Int? = nil
        let filter: SQLQuery = "status = \("open") AND owner = \(7)"
        let query: SQLQuery = "SELECT \(missing) FROM tickets WHERE \(filter) LIMIT \(10)"
        #expect(query.description == "SELECT $1 FROM tickets WHERE status = $2 AND owner = $3 LIMIT $4")
        #expect(query.bindings == [.null, .text("open"), .int(7), .int(10)])
    }

    @Test("raw SQL only through the named unsafe API")
    func unsafe() {
        let table = "audit_2026"
        let query: SQLQuery = "SELECT count(*) FROM \(unsafeSQL: table) WHERE id = \(1)"
        #expect(query.description == "SELECT count(*) FROM audit_2026 WHERE id = $1")
        #expect(SQLQuery(unsafeSQL: "VACUUM").description == "VACUUM")
    }

    @Test("[UInt8] is bytes, other arrays are arrays")
    func arrays() {
        let bytes: [UInt8] = [0, 1, 255]
        let query: SQLQuery = "VALUES (\(bytes), \([1, 2, 3]), \(["a", nil]))"
        #expect(
            query.bindings == [
                .bytes([0, 1, 255]), .array([.int(1), .int(2), .int(3)]), .array([.text("a"), .null]),
            ]
        )
    }
}

@Suite("SQLRow decoding")
struct SQLRowDecodingTests {
    let columns = SQLColumns([
        SQLColumn(index: 0, name: "id", databaseType: "int8"),
        SQLColumn(index: 1, name: "name", databaseType: "text"),
        SQLColumn(index: 2, name: "note", databaseType: "text"),
    ])

    @Test("by index, by name, into a tuple, with NULL as nil")
    func decodeRow() throws {
        let row = SQLRow(columns: columns, values: [.int(7), .text("Ada"), .null])
        #expect(try row.decode(Int.self, at: 0) == 7)
        #expect(try row.decode(String.self, named: "name") == "Ada")
        #expect(try row.decode(String?.self, named: "note") == nil)
        let (id, name, note) = try row.decode((Int32, String, String?).self)
        #expect(id == 7 && name == "Ada" && note == nil)
    }

    @Test("a name finds its first column, in narrow results and in wide ones (20 columns); a missing name is nil")
    func columnsByName() {
        for width in [3, 20] {
            // Column i is "c<i>", but the last two repeat "c1" and "c0".
            let columns = SQLColumns(
                (0..<width).map { index in
                    let name = index == width - 1 ? "c0" : index == width - 2 ? "c1" : "c\(index)"
                    return SQLColumn(index: index, name: name, databaseType: "int4")
                }
            )
            #expect(columns.index(named: "c0") == 0, "width \(width)")
            #expect(columns.index(named: "c1") == 1, "width \(width)")
            #expect(columns.index(named: "c\(width - 3)") == width - 3, "width \(width)")
            #expect(columns.index(named: "missing") == nil, "width \(width)")
            #expect(columns.index(named: "C0") == nil, "width \(width): names are case-sensitive")
        }
    }

    @Test("mismatches are typed errors naming the column, the database type and the Swift type")
    func mismatches() throws {
        let row = SQLRow(columns: columns, values: [.int(Int64(Int32.max) + 1), .text("12"), .null])
        let overflow = try #require(throws: SQLDecodingError.self) { try row.decode(Int32.self, at: 0) }
        #expect(
            overflow.description
                == "cannot decode column \"id\" (column 0, int8) as Swift.Int32: 2147483648 does not fit (-2147483648...2147483647)"
        )
        let textAsInt = try #require(throws: SQLDecodingError.self) { try row.decode(Int.self, named: "name") }
        #expect(textAsInt.reason == "a text value cannot be decoded as this type")
        let null = try #require(throws: SQLDecodingError.self) { try row.decode(String.self, at: 2) }
        #expect(null.reason.contains("NULL"))
        #expect(throws: SQLRowAccessError.self) { try row.decode(Int.self, named: "missing") }
        #expect(throws: SQLRowAccessError.self) { try row.decode((Int, String).self) }
    }

    @Test("unsigned values that do not fit are errors, not wraps")
    func unsigned() throws {
        let column = SQLColumn(index: 0, name: "u", databaseType: "BIGINT UNSIGNED")
        #expect(try UInt64.decode(from: .uint(.max), column: column) == .max)
        #expect(throws: SQLDecodingError.self) { try Int64.decode(from: .uint(.max), column: column) }
        #expect(throws: SQLDecodingError.self) { try UInt8.decode(from: .int(-1), column: column) }
    }

    @Test("invalid UTF-8 bytes are an error when decoded as String")
    func utf8() throws {
        let column = SQLColumn(index: 0, name: "b", databaseType: "bytea")
        #expect(try String.decode(from: .bytes(Array("héllo".utf8)), column: column) == "héllo")
        let error = try #require(throws: SQLDecodingError.self) {
            try String.decode(from: .bytes([0x66, 0xFF, 0xFE]), column: column)
        }
        #expect(error.reason == "the bytes are not valid UTF-8")
    }

    @Test("decimals round-trip exactly, and more digits than Decimal holds is an error")
    func decimals() throws {
        let column = SQLColumn(index: 0, name: "d", databaseType: "numeric")
        #expect(try Decimal.decode(from: .decimal("-12345.678900"), column: column) == Decimal(string: "-12345.6789"))
        #expect(try Decimal.decode(from: .decimal("0.000"), column: column) == 0)
        let wide = "12345678901234567890123456789012345.123456789012345678901234567890"
        let error = try #require(throws: SQLDecodingError.self) {
            try Decimal.decode(from: .decimal(wide), column: column)
        }
        #expect(error.reason.contains("more significant digits"))
        #expect(try String.decode(from: .decimal(wide), column: column) == wide)
    }

    @Test("JSON into Codable types")
    func json() throws {
        struct Settings: Codable, Sendable, Equatable {
            var theme: String
            var size: Int
        }
        let column = SQLColumn(index: 0, name: "doc", databaseType: "jsonb")
        let encoded = try SQLJSON(Settings(theme: "dark", size: 3))
        let decoded = try SQLJSON<Settings>.decode(from: encoded.sqlValue, column: column)
        #expect(decoded.value == Settings(theme: "dark", size: 3))
        #expect(throws: SQLDecodingError.self) {
            try SQLJSON<Settings>.decode(from: .json(Array("{\"theme\":1}".utf8)), column: column)
        }
    }
}
