import CMariaDB
import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

@Suite("MariaDB connections: connecting, safe defaults, statements")
struct MariaDBConnectionTests {
    @Test("connects over TCP and the unix socket; statements run on the connection's own thread")
    func connectAndRun() async throws {
        let server = try await TemporaryMariaDB.shared()
        let tcp = try await MariaDBConnection.connect(url: server.url)
        let row = try #require(
            try await tcp.query("SELECT 40 + \(2), CONNECTION_ID(), @@time_zone, @@character_set_client").first
        )
        #expect(try row.decode(Int.self, at: 0) == 42)
        #expect(try row.decode(UInt.self, at: 1) == tcp.serverConnectionID)
        #expect(try row.decode(String.self, at: 2) == "+00:00")
        #expect(try row.decode(String.self, at: 3) == "utf8mb4")
        let thread = try await tcp.withRawConnection { _ in ThreadIdentity.current.name }
        #expect(thread.hasPrefix("sb-mariadb-"))
        await tcp.close()
        let socket = try await MariaDBConnection.connect(
            configuration: MariaDBConfiguration(
                unixSocket: server.socketPath,
                user: server.user,
                password: server.password,
                database: server.database
            )
        )
        #expect(try await socket.query("SELECT DATABASE()").first?.decode(String.self, at: 0) == server.database)
        await socket.close()
    }

    @Test("URLs: percent-encoded credentials, options, and typed errors that never show the password")
    func urls() throws {
        let configuration = try MariaDBConfiguration(
            url:
                "mysql://app%40corp:p%40ss%3Aword@db.internal:3307/shop?connect-timeout=2.5&read-timeout=60&tls=required&statement-timeout=1.5"
        )
        #expect(configuration.user == "app@corp")
        #expect(configuration.password == "p@ss:word")
        #expect(configuration.host == "db.internal" && configuration.port == 3307 && configuration.database == "shop")
        #expect(configuration.connectTimeout == .milliseconds(2500))
        #expect(configuration.readTimeout == .seconds(60))
        #expect(configuration.statementTimeout == .milliseconds(1500))
        #expect(configuration.tls == .required)
        for text in [configuration.description, String(reflecting: configuration), "\(configuration)"] {
            #expect(!text.contains("p@ss"), "\(text)")
        }
        var dumped = ""
        dump(configuration, to: &dumped)
        #expect(!dumped.contains("p@ss"), "\(dumped)")
        let unknown = try #require(throws: MariaDBError.self) {
            try MariaDBConfiguration(url: "mariadb://u:secret@h/db?colour=blue")
        }
        #expect(unknown.kind == .invalidConfiguration)
        #expect(unknown.description.contains("colour"))
        #expect(!unknown.description.contains("secret"))
        let scheme = try #require(throws: MariaDBError.self) {
            try MariaDBConfiguration(url: "postgres://u:secret@h/db")
        }
        #expect(scheme.description.contains("mariadb://"))
    }

    @Test("a failed connection is a typed error naming the server, without the password")
    func connectionFailure() async throws {
        let server = try await TemporaryMariaDB.shared()
        var configuration = try await testConfiguration()
        configuration.password = "wrong-secret-password"
        let denied = try await #require(throws: MariaDBError.self) {
            try await MariaDBConnection.connect(configuration: configuration)
        }
        #expect(denied.kind == .connectionFailed)
        #expect(denied.number == 1045, "\(denied)")  // ER_ACCESS_DENIED_ERROR
        #expect(denied.description.contains("127.0.0.1:\(server.port)"))
        #expect(!denied.description.contains("wrong-secret-password"))
        configuration.port = 1  // nothing listens there
        let refused = try await #require(throws: MariaDBError.self) {
            try await MariaDBConnection.connect(configuration: configuration)
        }
        #expect(refused.kind == .connectionFailed)
        #expect(refused.number == 2002 || refused.number == 2003, "\(refused)")
        // TLS required against a server without TLS: refused, not silently plain text.
        var tls = try await testConfiguration()
        tls.tls = .required
        let plain = try await #require(throws: MariaDBError.self) {
            try await MariaDBConnection.connect(configuration: tls)
        }
        #expect(plain.kind == .connectionFailed, "\(plain)")
        #expect(plain.message.contains("TLS"), "\(plain)")
    }

    @Test("safe defaults: one statement per call, no LOAD DATA LOCAL INFILE, strict mode, finite read timeout")
    func safeDefaults() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let multi = try await #require(throws: MariaDBError.self) {
                try await connection.query("SELECT 1; SELECT 2")
            }
            #expect(multi.kind == .server, "\(multi)")
            let table = uniqueTable("infile")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (line TEXT)")
            let infile = try await #require(throws: MariaDBError.self) {
                try await connection.execute("LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE \(unsafeSQL: table)")
            }
            #expect(infile.number == 1148 || infile.number == 4166 || infile.number == 2068, "\(infile)")
            #expect(
                try await connection.query("SELECT count(*) FROM \(unsafeSQL: table)").first?.decode(Int.self, at: 0)
                    == 0
            )
            let mode = try #require(try await connection.query("SELECT @@SESSION.sql_mode").first).decode(
                String.self,
                at: 0
            )
            #expect(mode.contains("STRICT_ALL_TABLES"))
        }
        // A statement that sends nothing back for longer than the read timeout fails, and the
        // connection is marked unusable instead of hanging forever.
        var configuration = try await testConfiguration()
        configuration.readTimeout = .seconds(1)
        let connection = try await MariaDBConnection.connect(configuration: configuration)
        let error = try await #require(throws: MariaDBError.self) { try await connection.query("SELECT SLEEP(4)") }
        #expect(error.kind == .connectionClosed, "\(error)")
        #expect(!connection.isUsable)
        await connection.close()
    }

    @Test("statements are prepared once per connection and reused")
    func statementCache() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            func prepares() async throws -> Int {
                Int(
                    try #require(try await connection.query("SHOW SESSION STATUS LIKE 'Com_stmt_prepare'").first)
                        .decode(String.self, at: 1)
                ) ?? -1
            }
            let before = try await prepares()
            for value in 0..<20 {
                #expect(try await connection.query("SELECT \(value) + 1").first?.decode(Int.self, at: 0) == value + 1)
            }
            // One prepare for the SELECT, one for each SHOW.
            #expect(try await prepares() - before <= 3)
        }
    }

    @Test("a cached statement follows the table when its shape changes")
    func shapeChange() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("shape")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (a INT)")
            try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (1)")
            let before = try #require(try await connection.query("SELECT * FROM \(unsafeSQL: table)").first)
            #expect(before.columns.all.map(\.name) == ["a"])
            try await connection.execute("ALTER TABLE \(unsafeSQL: table) ADD COLUMN b VARCHAR(10) DEFAULT 'two'")
            let after = try #require(try await connection.query("SELECT * FROM \(unsafeSQL: table)").first)
            #expect(after.columns.all.map(\.name) == ["a", "b"])
            #expect(try after.decode((Int, String).self) == (1, "two"))
            try await connection.execute("ALTER TABLE \(unsafeSQL: table) CHANGE b c VARCHAR(10)")
            #expect(
                try await connection.query("SELECT * FROM \(unsafeSQL: table)").first?.columns.all.map(\.name) == [
                    "a", "c",
                ]
            )
            // A statement that writes is never run twice: its shape change is a typed error.
            try await connection.execute(
                "CREATE TABLE \(unsafeSQL: table)_log (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
            )
            try await connection.query("INSERT INTO \(unsafeSQL: table)_log (v) VALUES (1) RETURNING *")
            try await connection.execute("ALTER TABLE \(unsafeSQL: table)_log ADD COLUMN w INT")
            let changed = try await #require(throws: MariaDBError.self) {
                try await connection.query("INSERT INTO \(unsafeSQL: table)_log (v) VALUES (1) RETURNING *")
            }
            #expect(changed.number == 2057, "\(changed)")
            #expect(
                try await connection.query("SELECT count(*) FROM \(unsafeSQL: table)_log").first?.decode(
                    Int.self,
                    at: 0
                ) == 2
            )
            #expect(
                try await connection.query("INSERT INTO \(unsafeSQL: table)_log (v) VALUES (1) RETURNING *").first?
                    .count == 3
            )
        }
    }

    @Test("errors carry the number, SQLSTATE and message; duplicate keys are easy to tell")
    func errors() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("dup")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id INT PRIMARY KEY)")
            let id = try await connection.insert("INSERT INTO \(unsafeSQL: table) VALUES (\(1))")
            #expect(id == 0)
            let duplicate = try await #require(throws: MariaDBError.self) {
                try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(1))")
            }
            #expect(duplicate.isDuplicateKey && duplicate.isUniqueViolation)
            #expect(duplicate.number == 1062 && duplicate.sqlState == "23000")
            #expect(duplicate.message.contains("Duplicate entry"))
            #expect(duplicate.query?.contains("VALUES (?)") == true)
            let syntax = try await #require(throws: MariaDBError.self) { try await connection.query("SELEKT 1") }
            #expect(syntax.number == 1064 && syntax.sqlState == "42000")
            #expect(!syntax.isTransient)
            // AUTO_INCREMENT ids come back from insert.
            let auto = uniqueTable("auto")
            try await connection.execute(
                "CREATE TABLE \(unsafeSQL: auto) (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)"
            )
            let first = try await connection.insert("INSERT INTO \(unsafeSQL: auto) (v) VALUES (\(10))")
            let second = try await connection.insert("INSERT INTO \(unsafeSQL: auto) (v) VALUES (\(20))")
            #expect(second == first + 1)
            #expect(
                try await connection.execute("UPDATE \(unsafeSQL: auto) SET v = v") == 2,
                "found rows, not changed rows"
            )
        }
    }
}
