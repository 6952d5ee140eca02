import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

/// What a multiplexing proxy (ProxySQL, MaxScale) must be able to parse, checked in the server's
/// general query log: everything SyncBridge sends, on a server of the test's own.
@Suite("MariaDB sessions a proxy can parse")
struct MariaDBProxyTests {
    /// The statements the server logged from every connection but `admin`'s.
    func loggedStatements(_ admin: MariaDBConnection, excluding adminID: Int) async throws -> [String] {
        try await admin.query(
            """
            SELECT CONVERT(argument USING utf8mb4) FROM mysql.general_log
            WHERE command_type IN ('Query', 'Prepare', 'Execute') AND thread_id <> \(adminID)
            """
        ).map { try $0.decode(String.self, at: 0) }
    }

    @Test(
        "behind a proxy: literal settings only, no SET STATEMENT, and a statement past its timeout is still ended on the server (KILL QUERY)"
    )
    func literalSessions() async throws {
        let server = try await TemporaryMariaDB.start()
        let admin = try await MariaDBConnection.connect(configuration: configuration(for: server))
        try await admin.execute("SET GLOBAL log_output = 'TABLE'")
        try await admin.execute("SET GLOBAL general_log = 1")
        let adminID = try #require(try await admin.query("SELECT CONNECTION_ID()").first).decode(Int.self, at: 0)

        // Without the setting, the session sends both shapes a proxy cannot parse.
        var direct = configuration(for: server)
        direct.statementTimeout = .seconds(30)
        let directClient = MariaDBClient(configuration: direct)
        _ = try await directClient.query("SELECT \(1)", timeout: .seconds(5))
        await directClient.shutdown()
        let before = try await loggedStatements(admin, excluding: adminID)
        #expect(before.contains { $0.contains("@@SESSION.sql_mode") })
        #expect(before.contains { $0.contains("SET STATEMENT max_statement_time") })
        try await admin.execute("TRUNCATE mysql.general_log")

        // With it: a mixed workload and a statement past its timeout.
        var proxied = configuration(for: server)
        proxied.isBehindProxy = true
        proxied.statementTimeout = .seconds(30)
        let client = MariaDBClient(configuration: proxied)
        let table = uniqueTable("proxied")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (id INT PRIMARY KEY, code VARCHAR(2))")
        try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(1), \("ok"))")
        try await client.withTransaction { connection in
            try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(2), \("no"))")
        }
        var streamed = 0
        for try await _ in try await client.stream("SELECT id FROM \(unsafeSQL: table)") { streamed += 1 }
        #expect(streamed == 2)
        // Strict mode holds with the literal SQL mode: a value too long is an error, not cut.
        await #expect(throws: MariaDBError.self) {
            try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(3), \("too long"))")
        }
        let started = ContinuousClock.now
        let error = try await #require(throws: MariaDBError.self) {
            try await client.query("SELECT SLEEP(30)", timeout: .seconds(1))
        }
        #expect(error.kind == .timedOut)
        #expect(ContinuousClock.now - started < .seconds(10 * slowdown))
        // The server sends the interrupted statement's error before it clears the statement from
        // its process list, so the list is read until the statement is gone, not once.
        try await waitUntil(10) {
            try await admin.query(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(30)%'"
            ).first?.decode(Int.self, at: 0) == 0
        }
        #expect(try await client.query("SELECT 1").first?.decode(Int.self, at: 0) == 1)
        await client.shutdown()

        let after = try await loggedStatements(admin, excluding: adminID)
        #expect(after.contains { $0.hasPrefix("SET time_zone = '+00:00', sql_mode = '") })
        #expect(after.contains { $0.contains("STRICT_ALL_TABLES") })
        #expect(after.contains { $0.hasPrefix("KILL QUERY") })
        let unparsable = after.filter { $0.contains("@@") || $0.uppercased().contains("SET STATEMENT") }
        #expect(unparsable.isEmpty, "statements a proxy cannot parse: \(unparsable)")

        try await admin.execute("DROP TABLE \(unsafeSQL: table)")
        await admin.close()
        await server.stop()
    }

    @Test(
        "the timeout strategy can be chosen; a proxy makes client cancels the default; a bad SQL mode is a typed error"
    )
    func configurationChoices() async throws {
        var configuration = MariaDBConfiguration(user: "app")
        #expect(configuration.timeoutStrategy == nil)
        configuration.isBehindProxy = true
        #expect(configuration.description.hasSuffix("&proxy=true"))
        let parsed = try MariaDBConfiguration(url: "mariadb://app@db/shop?proxy=true&timeout-strategy=server")
        #expect(parsed.isBehindProxy)
        #expect(parsed.timeoutStrategy == .server)
        #expect(throws: MariaDBError.self) {
            try MariaDBConfiguration(url: "mariadb://app@db/shop?timeout-strategy=sometimes")
        }

        var badMode = try await testConfiguration()
        badMode.isBehindProxy = true
        badMode.sqlMode = "STRICT_ALL_TABLES'; DROP TABLE x; --"
        let error = try await #require(throws: MariaDBError.self) {
            try await MariaDBConnection.connect(configuration: badMode)
        }
        #expect(error.kind == .invalidConfiguration)
    }
}
