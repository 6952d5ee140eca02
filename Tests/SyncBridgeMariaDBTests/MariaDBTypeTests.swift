import Foundation
import SharedTestSupport
import SyncBridgeMariaDB
import SyncBridgeSQL
import Testing

@Suite("MariaDB values: exact round trips or typed errors")
struct MariaDBTypeTests {
    @Test("signed and unsigned integers at their extremes round-trip; an unsigned value that does not fit is an error")
    func integers() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("ints")
            try await connection.execute(
                """
                CREATE TABLE \(unsafeSQL: table) (
                  t TINYINT, tu TINYINT UNSIGNED, s SMALLINT, su SMALLINT UNSIGNED, m MEDIUMINT, mu MEDIUMINT UNSIGNED,
                  i INT, iu INT UNSIGNED, b BIGINT, bu BIGINT UNSIGNED)
                """
            )
            try await connection.execute(
                """
                INSERT INTO \(unsafeSQL: table) VALUES
                (\(Int8.min), \(UInt8.max), \(Int16.min), \(UInt16.max), \(-8_388_608), \(16_777_215),
                 \(Int32.min), \(UInt32.max), \(Int64.min), \(UInt64.max)),
                (\(Int8.max), \(UInt8.min), \(Int16.max), \(UInt16.min), \(8_388_607), \(0),
                 \(Int32.max), \(UInt32.min), \(Int64.max), \(UInt64.min))
                """
            )
            let rows = try await connection.query("SELECT * FROM \(unsafeSQL: table) ORDER BY t")
            let low = try rows[0].decode((Int8, UInt8, Int16, UInt16, Int32, UInt32, Int32, UInt32, Int64, UInt64).self)
            #expect(low.0 == .min && low.1 == .max && low.2 == .min && low.3 == .max && low.4 == -8_388_608)
            #expect(low.5 == 16_777_215 && low.6 == .min && low.7 == .max && low.8 == .min && low.9 == .max)
            let high = try rows[1].decode(
                (Int8, UInt8, Int16, UInt16, Int32, UInt32, Int32, UInt32, Int64, UInt64).self
            )
            #expect(
                high.0 == .max && high.1 == 0 && high.2 == .max && high.3 == 0 && high.6 == .max && high.8 == .max
                    && high.9 == 0
            )
            // BIGINT UNSIGNED 18446744073709551615 does not fit Int64: an error naming the column.
            let error = try #require(throws: SQLDecodingError.self) { try rows[0].decode(Int64.self, named: "bu") }
            #expect(error.column.name == "bu")
            #expect(error.column.databaseType == "BIGINT UNSIGNED")
            #expect(error.description.contains("18446744073709551615 does not fit"))
            // A value that does not fit the column is refused by the server (strict mode), not clipped.
            let refused = try await #require(throws: MariaDBError.self) {
                try await connection.execute("INSERT INTO \(unsafeSQL: table) (tu) VALUES (\(256))")
            }
            #expect(refused.number == 1264, "\(refused)")  // ER_WARN_DATA_OUT_OF_RANGE
            let negative = try await #require(throws: MariaDBError.self) {
                try await connection.execute("INSERT INTO \(unsafeSQL: table) (bu) VALUES (\(-1))")
            }
            #expect(negative.number == 1264, "\(negative)")
        }
    }

    @Test("a 1,000-row result: each row reads its own values, in order, with its NULLs")
    func manyRows() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let rows = try await connection.query(
                """
                SELECT CAST(seq AS SIGNED) AS i, IF(seq % 7 = 0, NULL, CONCAT('v', seq)) AS name,
                  -CAST(seq AS SIGNED) * 1000000000000 AS big
                FROM seq_1_to_1000 ORDER BY seq
                """
            )
            try expectThousandRows(rows)
        }
    }

    @Test("FLOAT, DOUBLE and DECIMAL(65,30): exact, or a typed error when Decimal cannot hold the digits")
    func numbers() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("numbers")
            try await connection.execute(
                "CREATE TABLE \(unsafeSQL: table) (f FLOAT, d DOUBLE, small DECIMAL(10,2), wide DECIMAL(65,30))"
            )
            let wide = "12345678901234567890123456789012345.123456789012345678901234567890"
            try await connection.execute(
                """
                INSERT INTO \(unsafeSQL: table) VALUES
                (\(Float(1.5)), \(Double.pi), \(Decimal(string: "-12345678.90")!), \(unsafeSQL: "'" + wide + "'"))
                """
            )
            let row = try #require(try await connection.query("SELECT * FROM \(unsafeSQL: table)").first)
            #expect(try row.decode(Float.self, named: "f") == 1.5)
            #expect(try row.decode(Double.self, named: "d") == Double.pi)
            #expect(try row.decode(Decimal.self, named: "small") == Decimal(string: "-12345678.90"))
            #expect(try row.decode(String.self, named: "wide") == wide)
            let error = try #require(throws: SQLDecodingError.self) { try row.decode(Decimal.self, named: "wide") }
            #expect(error.reason.contains("more significant digits"))
            // A bound decimal string keeps every digit on the way in too.
            try await connection.execute("UPDATE \(unsafeSQL: table) SET wide = \(SQLValue.decimal(wide))")
            #expect(
                try await connection.query("SELECT wide FROM \(unsafeSQL: table)").first?.decode(String.self, at: 0)
                    == wide
            )
        }
    }

    @Test("text: NUL bytes, emoji and injection strings round-trip; too long is an error; invalid UTF-8 is refused")
    func text() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("texts")
            try await connection.execute(
                "CREATE TABLE \(unsafeSQL: table) (id INT PRIMARY KEY, v TEXT, short VARCHAR(3))"
            )
            let samples = [
                "plain", "with\u{0}nul\u{0}bytes", "emoji 🦊 and ü", "'; DROP TABLE \(table); --",
                "back\\slash ? and $1",
                String(repeating: "x", count: 60_000),
            ]
            for (id, sample) in samples.enumerated() {
                try await connection.execute("INSERT INTO \(unsafeSQL: table) (id, v) VALUES (\(id), \(sample))")
            }
            let read = try await connection.query("SELECT v FROM \(unsafeSQL: table) ORDER BY id").map {
                try $0.decode(String.self, at: 0)
            }
            #expect(read == samples)
            let tooLong = try await #require(throws: MariaDBError.self) {
                try await connection.execute("INSERT INTO \(unsafeSQL: table) (id, short) VALUES (100, \("abcd"))")
            }
            #expect(tooLong.number == 1406, "\(tooLong)")  // ER_DATA_TOO_LONG: nothing truncated
            let invalid = try await #require(throws: MariaDBError.self) {
                try await connection.execute(
                    "INSERT INTO \(unsafeSQL: table) (id, v) VALUES (101, CONVERT(\([UInt8]([0x66, 0xff, 0xfe])) USING utf8mb4))"
                )
            }
            #expect(invalid.number == 1300 || invalid.number == 1366, "\(invalid)")
            #expect(
                try await connection.query("SELECT count(*) FROM \(unsafeSQL: table)").first?.decode(Int.self, at: 0)
                    == samples.count
            )
        }
    }

    @Test("text the server sends unconverted is text when it is valid UTF-8, and its bytes when it is not")
    func unconvertedText() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            // No conversion: the server sends each column's bytes in its own character set.
            try await connection.execute("SET character_set_results = NULL")
            let valid: [[UInt8]] = [
                Array("ascii text, longer than eight bytes".utf8), Array("émoji 🦊 ü ✓".utf8), [], Array("1234567".utf8),
            ]
            let invalid: [[UInt8]] = [
                [0xE9], Array("eight ok".utf8) + [0xFF], [0xF0, 0x9F, 0x98], [0xC0, 0xAF], [0xED, 0xA0, 0x80],
                Array("abc".utf8) + [0xEF, 0xBF],
            ]
            for bytes in valid + invalid {
                let row = try #require(
                    try await connection.query("SELECT CAST(\(bytes) AS CHAR CHARACTER SET latin1)").first
                )
                if valid.contains(bytes) {
                    #expect(row[0] == .text(String(decoding: bytes, as: UTF8.self)), "\(bytes)")
                } else {
                    #expect(row[0] == .bytes(bytes), "\(bytes)")
                }
            }
        }
    }

    @Test("a 10 MB BLOB round-trips byte for byte")
    func largeBlob() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("blobs")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id INT PRIMARY KEY, b LONGBLOB)")
            // Random bytes in one read, compared with memcmp (Data's ==): a byte-by-byte loop
            // over 10 MB in a debug build would itself hold a cooperative thread too long. Reading
            // 10 MB from /dev/urandom takes about 100 ms, so it is offloaded like any blocking call
            // (the watchdog caught it on a cooperative thread).
            let bytes = try await offloaded { () throws -> [UInt8] in
                let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
                defer { try? random.close() }
                return [UInt8](try #require(try random.read(upToCount: 10 * 1024 * 1024)))
            }
            #expect(bytes.count == 10 * 1024 * 1024)
            try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (1, \(bytes))")
            let row = try #require(try await connection.query("SELECT b, LENGTH(b) FROM \(unsafeSQL: table)").first)
            #expect(try row.decode(Int.self, at: 1) == bytes.count)
            #expect(Data(try row.decode([UInt8].self, at: 0)) == Data(bytes))
            #expect(try row.decode(Data.self, at: 0) == Data(bytes))
        }
    }

    @Test("dates, times and timestamps round-trip in UTC to the microsecond; TIME may be negative or past 24 h")
    func temporal() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("times")
            try await connection.execute(
                "CREATE TABLE \(unsafeSQL: table) (d DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL, t TIME(6))"
            )
            let instant = Date(timeIntervalSince1970: 1_700_000_000.123456)
            let day = Date(timeIntervalSince1970: 19_000 * 86_400)
            let duration = Duration.seconds(-(30 * 3600 + 5 * 60 + 7)) - .microseconds(250)
            try await connection.execute(
                "INSERT INTO \(unsafeSQL: table) VALUES (\(SQLValue.date(day)), \(instant), \(instant), \(SQLValue.time(duration)))"
            )
            let row = try #require(
                try await connection.query("SELECT d, dt, ts, t, CAST(dt AS CHAR) FROM \(unsafeSQL: table)").first
            )
            #expect(try row.decode(Date.self, at: 0) == day)
            let datetime = try row.decode(Date.self, at: 1)
            #expect(abs(datetime.timeIntervalSince(instant)) < 0.000_001)
            #expect(abs(try row.decode(Date.self, at: 2).timeIntervalSince(instant)) < 0.000_001)
            #expect(try row.decode(Duration.self, at: 3) == duration)
            #expect(try row.decode(String.self, at: 4) == "2023-11-14 22:13:20.123456")
        }
    }

    @Test("JSON into Codable, BIT into Bool and UInt64, NULL into Optional, and clear errors for mismatches")
    func jsonBitsAndNulls() async throws {
        struct Item: Codable, Equatable, Sendable {
            let sku: String
            let quantity: Int
        }
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("misc")
            try await connection.execute(
                "CREATE TABLE \(unsafeSQL: table) (j JSON, flag BIT(1), mask BIT(64), n INT NULL, u CHAR(36))"
            )
            let item = Item(sku: "A-1", quantity: 3)
            let uuid = UUID()
            try await connection.execute(
                "INSERT INTO \(unsafeSQL: table) VALUES (\(try SQLJSON(item)), \(true), \(UInt64.max), NULL, \(uuid))"
            )
            let row = try #require(
                try await connection.query("SELECT j, flag, mask, n, u FROM \(unsafeSQL: table)").first
            )
            #expect(try row.decode(SQLJSON<Item>.self, at: 0).value == item)
            #expect(try row.decode(Bool.self, at: 1) == true)
            #expect(try row.decode(UInt64.self, at: 2) == .max)
            #expect(try row.decode(Int?.self, at: 3) == nil)
            #expect(try row.decode(UUID.self, at: 4) == uuid)
            let null = try #require(throws: SQLDecodingError.self) { try row.decode(Int.self, named: "n") }
            #expect(null.description.contains("\"n\""))
            #expect(null.description.contains("NULL"))
            let mismatch = try #require(throws: SQLDecodingError.self) { try row.decode(Date.self, named: "u") }
            #expect(mismatch.column.databaseType == "CHAR")
            #expect(mismatch.swiftType.contains("Date"))
        }
    }

    @Test("rows decode by index, by name and into tuples")
    func rowAccess() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let row = try #require(
                try await connection.query("SELECT 7 AS id, \("seven") AS name, NULL AS missing").first
            )
            #expect(try row.decode(Int.self, at: 0) == 7)
            #expect(try row.decode(String.self, named: "name") == "seven")
            let (id, name, missing) = try row.decode((Int, String, String?).self)
            #expect(id == 7 && name == "seven" && missing == nil)
            #expect(throws: SQLRowAccessError.self) { try row.decode(Int.self, named: "nope") }
            #expect(throws: SQLRowAccessError.self) { try row.decode((Int, String).self) }
        }
    }

    @Test("an array parameter is a typed encoding error naming the parameter")
    func arrayParameter() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let error = try await #require(throws: SQLEncodingError.self) {
                try await connection.query("SELECT \(1), \([1, 2, 3])")
            }
            #expect(error.parameter == 2)
            #expect(error.reason.contains("no array type"))
            #expect(try await connection.query("SELECT 1").count == 1)
        }
    }
}
