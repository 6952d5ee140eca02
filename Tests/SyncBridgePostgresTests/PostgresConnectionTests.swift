import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

@Suite("PostgreSQL connection")
struct PostgresConnectionTests {
    @Test("300 distinct statements: every result right, at most 256 kept prepared on the server, the latest reused")
    func statementCache() async throws {
        let server = try await TemporaryPostgres.shared()
        let connection = try await PostgresConnection.connect(server.connectionString)
        for number in 0..<300 {
            let query: SQLQuery = "SELECT \(unsafeSQL: String(number)) + \(1)::int AS n"
            let value = try await connection.query(query).first?.decode(Int.self, at: 0)
            #expect(value == number + 1)
        }
        let kept = try await connection.query("SELECT count(*) FROM pg_prepared_statements").first?.decode(
            Int.self,
            at: 0
        )
        #expect(kept == 256)
        // The most recent statements are still prepared: running one again prepares nothing.
        _ = try await connection.query("SELECT \(unsafeSQL: "299") + \(1)::int AS n")
        let again = try await connection.query("SELECT count(*) FROM pg_prepared_statements").first?.decode(
            Int.self,
            at: 0
        )
        #expect(again == 256)
        await connection.close()
    }

    @Test("connects by key/value string and by URL; the password never shows")
    func connectAndDescribe() async throws {
        let server = try await TemporaryPostgres.shared()
        for connectionString in [server.connectionString, server.url] {
            let connection = try await PostgresConnection.connect(connectionString)
            let user = try await connection.query("SELECT current_user").first?.decode(String.self, at: 0)
            #expect(user == "syncbridge")
            #expect(!connection.description.contains(server.password))
            #expect(connection.description.contains("port=\(server.port)"))
            await connection.close()
        }
    }

    @Test("connect errors are typed, name the host that failed, and never show the password")
    func connectErrors() async throws {
        let server = try await TemporaryPostgres.shared()
        let closedPort = server.port == 1 ? 2 : 1
        let refused = try await #require(throws: PostgresError.self) {
            try await PostgresConnection.connect(
                "host=127.0.0.1 port=\(closedPort) user=x password=s3cret-pw connect_timeout=2"
            )
        }
        #expect(refused.kind == .connectionFailed)
        #expect(refused.host == "127.0.0.1:\(closedPort)")
        #expect(refused.message.contains("Connection refused"))
        #expect(!refused.description.contains("s3cret-pw"))

        let badPassword = try await #require(throws: PostgresError.self) {
            try await PostgresConnection.connect(
                "postgres://\(server.user):wrong-s3cret@127.0.0.1:\(server.port)/\(server.database)"
            )
        }
        #expect(badPassword.message.contains("password authentication failed"))
        #expect(!badPassword.description.contains("wrong-s3cret"))

        let malformed = try await #require(throws: PostgresError.self) {
            try await PostgresConnection.connect("host=127.0.0.1 nonsense_option=1")
        }
        #expect(malformed.message.contains("nonsense_option"))
    }

    @Test("several hosts: libpq fails over to the next one")
    func failover() async throws {
        let server = try await TemporaryPostgres.shared()
        let closedPort = server.port == 1 ? 2 : 1
        let connection = try await PostgresConnection.connect(
            "host=127.0.0.1,127.0.0.1 port=\(closedPort),\(server.port) dbname=\(server.database) user=\(server.user) password=\(server.password) target_session_attrs=read-write application_name=sb-failover"
        )
        let name = try await connection.query("SELECT current_setting('application_name')").first?.decode(
            String.self,
            at: 0
        )
        #expect(name == "sb-failover")
        await connection.close()
    }

    @Test("every statement runs on the connection's own thread")
    func runsOnItsThread() async throws {
        try await withTestConnection { connection in
            let thread = try await connection.withRawConnection { _ in ThreadIdentity.current.name }
            // The kernel keeps 15 bytes of a thread's name (connection 1000 onwards loses a digit).
            #expect(thread == String(connection.executor.name.prefix(15)))
            #expect(thread.hasPrefix("sb-postgres-"))
        }
    }

    @Test("server errors carry SQLSTATE, constraint, table, detail and position")
    func serverErrors() async throws {
        try await withTestConnection { connection in
            let table = uniqueTable("users")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (email text PRIMARY KEY)")
            try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\("a@example.com"))")
            let duplicate = try await #require(throws: PostgresError.self) {
                try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\("a@example.com"))")
            }
            #expect(duplicate.isUniqueViolation)
            #expect(duplicate.kind == .server)
            #expect(duplicate.severity == "ERROR")
            #expect(duplicate.constraint == "\(table)_pkey")
            #expect(duplicate.table == table)
            #expect(duplicate.detail?.contains("a@example.com") == true)
            #expect(duplicate.query == "INSERT INTO \(table) VALUES ($1)")

            let syntax = try await #require(throws: PostgresError.self) {
                try await connection.query("SELEC 1")
            }
            #expect(syntax.sqlState == "42601")
            #expect(syntax.position == 1)
            // The connection is still usable after errors.
            #expect(try await connection.query("SELECT 1").first?.decode(Int.self, at: 0) == 1)
        }
    }

    @Test("injection strings are data")
    func injection() async throws {
        try await withTestConnection { connection in
            let table = uniqueTable("names")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (name text)")
            let attacks = [
                "Robert'); DROP TABLE \(table);--", "' OR '1'='1", "\\'; SELECT pg_sleep(10); --", "$1", "?", "'';",
            ]
            for attack in attacks {
                try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(attack))")
            }
            let stored = try await connection.query("SELECT name FROM \(unsafeSQL: table)").map {
                try $0.decode(String.self, at: 0)
            }
            #expect(stored == attacks)
            let matched = try await connection.query(
                "SELECT count(*) FROM \(unsafeSQL: table) WHERE name = \("' OR '1'='1")"
            )
            #expect(try matched.first?.decode(Int.self, at: 0) == 1)
        }
    }

    @Test("prepared statements are cached per connection")
    func preparedStatements() async throws {
        try await withTestConnection { connection in
            for value in 1...5 {
                #expect(
                    try await connection.query("SELECT \(value)::int4 + 1").first?.decode(Int.self, at: 0) == value + 1
                )
            }
            let prepared = try await connection.query(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement = \("SELECT $1::int4 + 1")"
            )
            #expect(try prepared.first?.decode(Int.self, at: 0) == 1)
        }
    }

    @Test("the escape hatch runs legacy libpq code with the raw handle")
    func rawConnection() async throws {
        try await withTestConnection { connection in
            let (version, encoding) = try await connection.withRawConnection { pgconn in
                (LegacyPostgres.serverVersion(pgconn), LegacyPostgres.clientEncoding(pgconn))
            }
            #expect(version >= 150_000)
            #expect(encoding == "UTF8")
            #expect(try await connection.query("SELECT 2").first?.decode(Int.self, at: 0) == 2)
        }
    }
}
