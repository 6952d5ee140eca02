import Foundation
import SharedTestSupport
import SyncBridgeMariaDB
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

@Suite("MariaDB executeMany")
struct MariaDBBulkTests {
    /// Connects with bulk commands on (the default) or off (one execution per row).
    func connect(bulk: Bool) async throws -> MariaDBConnection {
        var configuration = try await testConfiguration()
        configuration.bulkExecution = bulk
        return try await MariaDBConnection.connect(configuration: configuration)
    }

    func makeTable(on connection: MariaDBConnection) async throws -> String {
        let table = uniqueTable("bulk")
        try await connection.execute(
            "CREATE TABLE \(unsafeSQL: table) (id INT PRIMARY KEY, name VARCHAR(400), price DECIMAL(10,2), ratio DOUBLE, active BOOL, seen DATETIME(6), data BLOB) ENGINE=InnoDB"
        )
        return table
    }

    func rows(_ ids: ClosedRange<Int>) -> [[SQLValue]] {
        ids.map { id in
            let name: SQLValue = .text("name \(id) " + String(repeating: "x", count: 300))
            let ratio: SQLValue = id.isMultiple(of: 7) ? .null : .double(Double(id) / 4)
            let seen = Date(timeIntervalSince1970: 1_700_000_000 + Double(id) + 0.5)
            let data: [UInt8] = [UInt8(id % 256), 0, 255]
            return [
                .int(Int64(id)), name, .decimal("\(id).25"), ratio, .bool(id.isMultiple(of: 2)), .timestamp(seen),
                .bytes(data),
            ]
        }
    }

    /// The server's count of this session's prepared statement executions.
    func statementExecutions(on connection: MariaDBConnection) async throws -> Int {
        let row = try await connection.query(
            "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'COM_STMT_EXECUTE'"
        ).first
        let text = try #require(row).decode(String.self, at: 0)
        return try #require(Int(text))
    }

    func count(_ table: String, on connection: MariaDBConnection) async throws -> Int? {
        try await connection.query("SELECT count(*) FROM \(unsafeSQL: table)").first?.decode(Int.self, at: 0)
    }

    @Test(
        "rows of every type go in exactly once: 10,000 in several bulk commands, 3,000 one execution each",
        arguments: [true, false]
    )
    func tenThousandRows(bulk: Bool) async throws {
        // One execution per row is 10,000 round trips: 3,000 rows show it as well, with less
        // load on the suite that runs beside it.
        let total = bulk ? 10_000 : 3_000
        try await withClosing(connect(bulk: bulk)) { (connection) async throws -> Void in
            let table = try await makeTable(on: connection)
            let executions = try await statementExecutions(on: connection)
            let affected = try await connection.executeMany(
                "INSERT INTO \(unsafeSQL: table) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows: rows(1...total)
            )
            #expect(affected == total)
            // What the server counted: a few bulk commands (about 4 MB of values, at most 2 MB
            // each), or one execution per row.
            let executed = try await statementExecutions(on: connection) - executions - 1
            if bulk {
                #expect((2...4).contains(executed), "\(executed) executions")
            } else {
                #expect(executed == total)
            }
            let summary = try #require(
                try await connection.query(
                    "SELECT count(*), count(DISTINCT id), CAST(sum(id) AS SIGNED), CAST(sum(ratio IS NULL) AS SIGNED), CAST(sum(active) AS SIGNED) FROM \(unsafeSQL: table)"
                ).first
            )
            #expect(try summary.decode(Int.self, at: 0) == total)
            #expect(try summary.decode(Int.self, at: 1) == total)
            #expect(try summary.decode(Int.self, at: 2) == total * (total + 1) / 2)
            #expect(try summary.decode(Int.self, at: 3) == total / 7)
            #expect(try summary.decode(Int.self, at: 4) == total / 2)
            let row = try #require(
                try await connection.query("SELECT * FROM \(unsafeSQL: table) WHERE id = \(2_321)").first
            )
            #expect(try row.decode(String.self, at: 1) == "name 2321 " + String(repeating: "x", count: 300))
            #expect(try row.decode(String.self, at: 2) == "2321.25")
            #expect(try row.decode(Double.self, at: 3) == 2321.0 / 4)
            #expect(try row.decode(Bool.self, at: 4) == false)
            #expect(try row.decode(Date.self, at: 5) == Date(timeIntervalSince1970: 1_700_002_321.5))
            #expect(try row.decode([UInt8].self, at: 6) == [UInt8(2321 % 256), 0, 255])
            // The statement is a single-row one again afterwards.
            #expect(try await connection.execute("DELETE FROM \(unsafeSQL: table) WHERE id = \(1)") == 1)
            #expect(
                try await connection.executeMany(
                    "DELETE FROM \(unsafeSQL: table) WHERE id = ?",
                    rows: [[.int(2)], [.int(3)], [.int(1)]]
                ) == 2
            )
        }
    }

    @Test(
        "a row the server refuses is named in a typed error, and nothing of the call stands",
        arguments: [true, false]
    )
    func failingRow(bulk: Bool) async throws {
        let (total, failing) = bulk ? (10_000, 6_789) : (3_000, 2_345)
        try await withClosing(connect(bulk: bulk)) { (connection) async throws -> Void in
            let table = try await makeTable(on: connection)
            var values = rows(1...total)
            values[failing][0] = .int(17)
            let error = try await #require(throws: MariaDBError.self) {
                try await connection.executeMany(
                    "INSERT INTO \(unsafeSQL: table) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows: values
                )
            }
            #expect(error.isDuplicateKey)
            #expect(error.row == failing)
            #expect(error.description.contains("row \(failing) of the batch"))
            #expect(try await count(table, on: connection) == 0)
            // A single command fails as a whole too.
            let small = try await #require(throws: MariaDBError.self) {
                try await connection.executeMany(
                    "INSERT INTO \(unsafeSQL: table) (id) VALUES (?)",
                    rows: [[.int(1)], [.int(2)], [.int(2)], [.int(3)]]
                )
            }
            #expect(small.row == 2)
            #expect(try await count(table, on: connection) == 0)
        }
    }

    @Test("in a transaction that rolls back, nothing of executeMany is left")
    func insideATransaction() async throws {
        struct Abort: Error {}
        try await withClosing(connect(bulk: true)) { (connection) async throws -> Void in
            let table = try await makeTable(on: connection)
            await #expect(throws: Abort.self) {
                try await connection.withTransaction { tx in
                    let affected = try await tx.executeMany(
                        "INSERT INTO \(unsafeSQL: table) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        rows: rows(1...10_000)
                    )
                    #expect(affected == 10_000)
                    #expect(
                        try await tx.query("SELECT count(*) FROM \(unsafeSQL: table)").first?.decode(Int.self, at: 0)
                            == 10_000
                    )
                    throw Abort()
                }
            }
            #expect(try await count(table, on: connection) == 0)
        }
    }

    @Test("bad input is refused before anything is sent, naming the row and parameter")
    func badInput() async throws {
        try await withClosing(connect(bulk: true)) { (connection) async throws -> Void in
            let table = try await makeTable(on: connection)
            let insert: SQLQuery = "INSERT INTO \(unsafeSQL: table) (id, name) VALUES (?, ?)"
            let mixed = try await #require(throws: SQLEncodingError.self) {
                try await connection.executeMany(
                    insert,
                    rows: [[.int(1), .text("a")], [.int(2), .null], [.int(3), .int(5)]]
                )
            }
            #expect(mixed.row == 2)
            #expect(mixed.parameter == 2)
            #expect(mixed.description.contains("row 2"))
            let short = try await #require(throws: MariaDBError.self) {
                try await connection.executeMany(insert, rows: [[.int(1), .text("a")], [.int(2)]])
            }
            #expect(short.row == 1)
            #expect(short.message.contains("1 values but the statement has 2 placeholders"))
            let interpolated = try await #require(throws: MariaDBError.self) {
                try await connection.executeMany("INSERT INTO \(unsafeSQL: table) (id) VALUES (\(1))", rows: [[]])
            }
            #expect(interpolated.message.contains("interpolate no value"))
            #expect(try await count(table, on: connection) == 0)
            #expect(try await connection.executeMany(insert, rows: []) == 0)
        }
    }

    @Test("the client runs executeMany on a pooled connection")
    func client() async throws {
        let client = MariaDBClient(configuration: try await testConfiguration(), name: "sb-bulk")
        let table = uniqueTable("bulk_client")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (id INT PRIMARY KEY)")
        #expect(
            try await client.executeMany(
                "INSERT INTO \(unsafeSQL: table) VALUES (?)",
                rows: (1...500).map { [.int(Int64($0))] }
            ) == 500
        )
        #expect(
            try await client.query("SELECT CAST(sum(id) AS SIGNED) FROM \(unsafeSQL: table)").first?.decode(
                Int.self,
                at: 0
            ) == 500 * 501 / 2
        )
        await client.shutdown()
    }
}
