import Foundation
import SharedTestSupport
import SyncBridgePostgres
import SyncBridgeSQL
import Testing

/// Round-trips values through real columns: insert as parameters, select back, compare.
@Suite("PostgreSQL types")
struct PostgresTypeTests {
    /// Inserts `value` into a column of `sqlType` and reads it back as `T`.
    func roundTrip<T: SQLCodable & Equatable>(
        _ value: T,
        as sqlType: String,
        on connection: PostgresConnection
    ) async throws -> T {
        let table = uniqueTable("rt")
        try await connection.execute("CREATE TEMP TABLE \(unsafeSQL: table) (v \(unsafeSQL: sqlType))")
        try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(value))")
        let row = try #require(try await connection.query("SELECT v FROM \(unsafeSQL: table)").first)
        return try row.decode(T.self, at: 0)
    }

    @Test("scalars round-trip exactly, extremes included")
    func scalars() async throws {
        try await withTestConnection { (c) async throws -> Void in
            #expect(try await roundTrip(true, as: "boolean", on: c) == true)
            #expect(try await roundTrip(Int16.min, as: "int2", on: c) == Int16.min)
            #expect(try await roundTrip(Int32.max, as: "int4", on: c) == Int32.max)
            #expect(try await roundTrip(Int64.min, as: "int8", on: c) == Int64.min)
            #expect(try await roundTrip(Int.max, as: "int8", on: c) == Int.max)
            #expect(try await roundTrip(Float(3.4028235e38), as: "float4", on: c) == Float(3.4028235e38))
            #expect(try await roundTrip(Double.leastNonzeroMagnitude, as: "float8", on: c) == .leastNonzeroMagnitude)
            #expect(
                try await roundTrip(Double.greatestFiniteMagnitude, as: "float8", on: c) == .greatestFiniteMagnitude
            )
            #expect(try await roundTrip(-Double.infinity, as: "float8", on: c) == -.infinity)
            #expect(try await roundTrip(0.1 + 0.2, as: "float8", on: c) == 0.1 + 0.2)
            #expect(try await roundTrip("héllo wörld ✓ 🎉", as: "text", on: c) == "héllo wörld ✓ 🎉")
            #expect(try await roundTrip("padded", as: "varchar(20)", on: c) == "padded")
            let uuid = UUID()
            #expect(try await roundTrip(uuid, as: "uuid", on: c) == uuid)
            let decimal = Decimal(string: "-12345678901234567890.123456789012345678")!
            #expect(try await roundTrip(decimal, as: "numeric", on: c) == decimal)
            let bytes: [UInt8] = [0, 1, 2, 0xFF, 0x5C, 0x78]
            #expect(try await roundTrip(bytes, as: "bytea", on: c) == bytes)
            #expect(try await roundTrip(Data(bytes), as: "bytea", on: c) == Data(bytes))
            let instant = Date(timeIntervalSince1970: 1_700_000_000.123456)
            #expect(try await roundTrip(instant, as: "timestamptz", on: c) == instant)
            #expect(try await roundTrip(instant, as: "timestamp", on: c) == instant)
            let old = Date(timeIntervalSince1970: -2_000_000_000.5)
            #expect(try await roundTrip(old, as: "timestamptz", on: c) == old)
        }
    }

    @Test("a 1,000-row result: each row reads its own values, in order, with its NULLs; integers at both extremes")
    func manyRows() async throws {
        try await withTestConnection { (c) async throws -> Void in
            let rows = try await c.query(
                """
                SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'v' || i END AS name, -i::int8 * 1000000000000 AS big
                FROM generate_series(1, 1000) AS i
                """
            )
            try expectThousandRows(rows)
            let extremes = try #require(
                try await c.query("SELECT \(Int64.min)::int8, \(Int64.max)::int8, 0::int2, -1::int4").first
            )
            #expect(extremes.values == [.int(.min), .int(.max), .int(0), .int(-1)])
        }
    }

    @Test(
        "a prepared statement whose table changes shape: the next call has the new columns (after at most one typed 0A000), never the old ones"
    )
    func tableChangesShape() async throws {
        try await withTestConnection { (c) async throws -> Void in
            let table = uniqueTable("shape")
            try await c.execute("CREATE TABLE \(unsafeSQL: table) (a int)")
            try await c.execute("INSERT INTO \(unsafeSQL: table) VALUES (1)")
            let select: SQLQuery = "SELECT * FROM \(unsafeSQL: table)"
            /// The statement's rows, run again once if the server refuses the cached plan.
            func rows() async throws -> [SQLRow] {
                do {
                    return try await c.query(select)
                } catch let error as PostgresError where error.sqlState == "0A000" {
                    return try await c.query(select)
                }
            }
            for _ in 0..<2 { #expect(try await rows().first?.decode(Int.self, named: "a") == 1) }
            // Same types, another name.
            try await c.execute("ALTER TABLE \(unsafeSQL: table) RENAME COLUMN a TO b")
            let renamed = try #require(try await rows().first)
            #expect(renamed.columns.all.map(\.name) == ["b"] && renamed.values == [.int(1)])
            // Another column.
            try await c.execute("ALTER TABLE \(unsafeSQL: table) ADD COLUMN c text DEFAULT 'x'")
            let widened = try #require(try await rows().first)
            #expect(widened.columns.all.map(\.name) == ["b", "c"] && widened.values == [.int(1), .text("x")])
            #expect(try await rows().first?.columns.all.map(\.name) == ["b", "c"])
        }
    }

    @Test("dates, times, NULL and Optional")
    func datesAndNulls() async throws {
        try await withTestConnection { (c) async throws -> Void in
            let row = try #require(
                try await c.query("SELECT DATE '2024-02-29', TIME '13:45:07.25', NULL::int4, 5::int4").first
            )
            #expect(try row.decode(Date.self, at: 0) == Date(timeIntervalSince1970: 1_709_164_800))
            #expect(try row.decode(Duration.self, at: 1) == .seconds(13 * 3600 + 45 * 60 + 7) + .milliseconds(250))
            #expect(try row.decode(Int?.self, at: 2) == nil)
            #expect(try row.decode(Int?.self, at: 3) == 5)
            let missing: String? = nil
            #expect(try await roundTrip(missing, as: "text", on: c) == nil)
        }
    }

    @Test("arrays of scalars, with NULLs, quotes and nesting")
    func arrays() async throws {
        try await withTestConnection { (c) async throws -> Void in
            #expect(try await roundTrip([1, -2, 3], as: "int8[]", on: c) == [1, -2, 3])
            #expect(try await roundTrip([Int32](), as: "int4[]", on: c) == [])
            let tricky = ["plain", "with \"quotes\"", "back\\slash", "comma,brace}{", "NULL", ""]
            #expect(try await roundTrip(tricky, as: "text[]", on: c) == tricky)
            let withNulls: [String?] = ["a", nil, "c"]
            #expect(try await roundTrip(withNulls, as: "text[]", on: c) == withNulls)
            #expect(try await roundTrip([true, false], as: "bool[]", on: c) == [true, false])
            #expect(try await roundTrip([1.5, -0.25], as: "float8[]", on: c) == [1.5, -0.25])
            let uuids = [UUID(), UUID()]
            #expect(try await roundTrip(uuids, as: "uuid[]", on: c) == uuids)
            let matrix = try #require(try await c.query("SELECT ARRAY[[1,2],[3,4]]::int4[]").first)
            #expect(matrix[0] == .array([.array([.int(1), .int(2)]), .array([.int(3), .int(4)])]))
            let any = try await c.query("SELECT 3 = ANY(\([1, 2, 3]))")
            #expect(try any.first?.decode(Bool.self, at: 0) == true)
        }
    }

    @Test("JSON and JSONB into Codable types")
    func json() async throws {
        struct Order: Codable, Sendable, Equatable {
            var id: Int
            var items: [String]
            var note: String?
        }
        try await withTestConnection { (c) async throws -> Void in
            let order = Order(id: 7, items: ["a", "b\"c"], note: nil)
            for type in ["json", "jsonb"] {
                let table = uniqueTable("doc")
                try await c.execute("CREATE TEMP TABLE \(unsafeSQL: table) (doc \(unsafeSQL: type))")
                try await c.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(try SQLJSON(order)))")
                let row = try #require(try await c.query("SELECT doc FROM \(unsafeSQL: table)").first)
                #expect(try row.decode(SQLJSON<Order>.self, at: 0).value == order)
            }
        }
    }

    @Test("mismatches are typed errors naming column, PostgreSQL type and Swift type")
    func mismatches() async throws {
        try await withTestConnection { (c) async throws -> Void in
            let row = try #require(
                try await c.query("SELECT 'abc'::text AS word, 40000::int4 AS big, NULL::int8 AS nothing").first
            )
            let textAsInt = try #require(throws: SQLDecodingError.self) { try row.decode(Int.self, named: "word") }
            #expect(textAsInt.column.databaseType == "text")
            #expect(textAsInt.column.name == "word")
            #expect(textAsInt.swiftType == "Swift.Int")
            let overflow = try #require(throws: SQLDecodingError.self) { try row.decode(Int16.self, named: "big") }
            #expect(
                overflow.description
                    == "cannot decode column \"big\" (column 1, int4) as Swift.Int16: 40000 does not fit (-32768...32767)"
            )
            let null = try #require(throws: SQLDecodingError.self) { try row.decode(Int.self, named: "nothing") }
            #expect(null.column.databaseType == "int8")
        }
    }

    @Test("bad input: NUL in text, invalid UTF-8, 10 MB values, huge numerics")
    func badInput() async throws {
        try await withTestConnection { (c) async throws -> Void in
            let nul = try await #require(throws: SQLEncodingError.self) {
                try await c.query("SELECT \(1), \("a\u{0}b")")
            }
            #expect(nul.parameter == 2)
            #expect(nul.reason.contains("NUL"))

            let invalid = try #require(try await c.query("SELECT \([UInt8]([0x61, 0xFF, 0xFE]))::bytea AS raw").first)
            #expect(try invalid.decode([UInt8].self, at: 0) == [0x61, 0xFF, 0xFE])
            let utf8 = try #require(throws: SQLDecodingError.self) { try invalid.decode(String.self, named: "raw") }
            #expect(utf8.reason == "the bytes are not valid UTF-8")

            // Built off the cooperative pool and compared with memcmp: loops over 10 MB in a debug
            // build hold a thread for hundreds of milliseconds, which the watchdog reports.
            let big = try await offloaded {
                let pattern = (0..<256).map { UInt8(truncatingIfNeeded: $0 &* 31) }
                return [UInt8](unsafeUninitializedCapacity: 10_000_000) { buffer, count in
                    for start in stride(from: 0, to: buffer.count, by: pattern.count) {
                        let length = min(pattern.count, buffer.count - start)
                        pattern.withUnsafeBufferPointer { source in
                            (buffer.baseAddress! + start).update(from: source.baseAddress!, count: length)
                        }
                    }
                    count = buffer.count
                }
            }
            #expect(Data(try await roundTrip(big, as: "bytea", on: c)) == Data(big))
            let bigText = String(repeating: "0123456789", count: 1_000_000)
            #expect(try await roundTrip(bigText, as: "text", on: c) == bigText)

            let digits = "9" + String(repeating: "0", count: 120) + ".000000000000000000000000000001"
            let numeric = try #require(try await c.query("SELECT \(unsafeSQL: digits)::numeric").first)
            #expect(try numeric.decode(String.self, at: 0) == digits)
            #expect(throws: SQLDecodingError.self) { try numeric.decode(Decimal.self, at: 0) }
            #expect(try await roundTrip(UInt64(Int64.max), as: "int8", on: c) == UInt64(Int64.max))
            let tooBig = try await #require(throws: PostgresError.self) {
                try await c.execute("SELECT \(UInt64.max)::int8")
            }
            #expect(tooBig.sqlState == "22003")  // numeric_value_out_of_range
        }
    }
}
