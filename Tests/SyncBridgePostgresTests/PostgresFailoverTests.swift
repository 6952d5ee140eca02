import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

/// A primary and a streaming standby of their own; the client on
/// `host=primary,standby target_session_attrs=read-write`, as behind Patroni.
@Suite("PostgreSQL failover to a standby")
struct PostgresFailoverTests {
    /// What the writers saw.
    struct Writes: Sendable {
        var succeeded: Set<[Int]> = []
        var failures: [String] = []
        /// Errors other than the typed ones a failover may cause.
        var untyped: [String] = []
        var lastSuccess: ContinuousClock.Instant?
    }

    @Test(
        "stop the primary and promote the standby under writes: typed errors meanwhile, writes again within seconds, no connection to the old primary kept, nothing committed lost"
    )
    func switchover() async throws {
        let primary = try await TemporaryPostgres.start()
        let standby = try await primary.startStandby()
        let table = uniqueTable("failover_rows")
        let connectionString =
            "host=127.0.0.1,127.0.0.1 port=\(primary.port),\(standby.port) dbname=\(primary.database) "
            + "user=\(primary.user) password=\(primary.password) target_session_attrs=read-write connect_timeout=2"
        var pool = ConnectionPoolConfiguration()
        pool.maximumConnections = 4
        pool.acquireTimeout = .seconds(5)
        let connections = pool.maximumConnections
        let client = PostgresClient(
            configuration: PostgresConfiguration(connectionString: connectionString),
            poolConfiguration: pool,
            name: uniqueTable("failover")
        )
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (task int, n int, PRIMARY KEY (task, n))")
        // The table reached the standby before anything else happens.
        try await waitUntil(30) {
            let standbyClient = PostgresClient(connectionString: standby.connectionString)
            defer { Task { await standbyClient.shutdown() } }
            return (try? await standbyClient.query("SELECT 1 FROM \(unsafeSQL: table)")) != nil
        }

        let writes = Shared(Writes())
        let stop = Shared(false)
        let writers = (0..<8).map { task in
            Task {
                var n = 0
                while !stop.value {
                    n += 1
                    do {
                        try await client.execute("INSERT INTO \(unsafeSQL: table) (task, n) VALUES (\(task), \(n))")
                        writes.withLock {
                            $0.succeeded.insert([task, n])
                            $0.lastSuccess = .now
                        }
                    } catch let error as PostgresError {
                        writes.withLock { $0.failures.append("\(error.kind) \(error.sqlState)") }
                        try? await Task.sleep(for: .milliseconds(20))
                    } catch let error as ConnectionPoolError {
                        writes.withLock { $0.failures.append("pool \(error.code)") }
                        try? await Task.sleep(for: .milliseconds(20))
                    } catch {
                        writes.withLock { $0.untyped.append("\(type(of: error)): \(error)") }
                    }
                }
            }
        }
        try await waitUntil(30) { writes.value.succeeded.count >= 200 }

        // A switchover: the primary stops (its last WAL reaches the standby), the standby is promoted.
        await primary.stop()
        try await standby.promote()
        let promoted = ContinuousClock.now
        try await waitUntil(60) { (writes.value.lastSuccess ?? promoted) > promoted }
        let recovery = try #require(writes.value.lastSuccess) - promoted
        let countAtRecovery = writes.value.succeeded.count
        try await waitUntil(30) { writes.value.succeeded.count >= countAtRecovery + 100 }
        stop.withLock { $0 = true }
        for writer in writers { await writer.value }

        let seen = writes.value
        #expect(seen.untyped.isEmpty, "errors that are not typed: \(seen.untyped.prefix(5))")
        #expect(!seen.failures.isEmpty, "no write failed: the switchover did not happen under the writes")
        #expect(recovery < .seconds(15 * slowdown), "writes came back \(recovery) after the promotion")
        // Every connection the pool holds is on the new primary, which accepts writes.
        let servers = try await withThrowingTaskGroup(of: [Int].self) { group in
            let (holding, release) = (Shared(0), Gate())
            for _ in 0..<connections {
                group.addTask {
                    try await client.withConnection { connection in
                        holding.withLock { $0 += 1 }
                        try await release.wait()
                        let row = try #require(
                            try await connection.query("SELECT inet_server_port(), pg_is_in_recovery()::int").first
                        )
                        return [try row.decode(Int.self, at: 0), try row.decode(Int.self, at: 1)]
                    }
                }
            }
            try await waitUntil(30) { holding.value == connections }
            release.open()
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(servers.count == connections)
        #expect(servers.allSatisfy { $0 == [standby.port, 0] })
        // Nothing that was reported committed is missing.
        let rows = try await client.query("SELECT task, n FROM \(unsafeSQL: table)").map {
            [try $0.decode(Int.self, at: 0), try $0.decode(Int.self, at: 1)]
        }
        #expect(seen.succeeded.isSubset(of: Set(rows)))
        #expect(seen.succeeded.count > countAtRecovery)
        await client.shutdown()
        await standby.stop()
    }

    @Test(
        "a write refused because the server turned read-only discards the connection; a read-only transaction's refusal does not"
    )
    func readOnlyServerConnectionsAreDiscarded() async throws {
        let server = try await TemporaryPostgres.start()
        var pool = ConnectionPoolConfiguration()
        pool.maximumConnections = 1
        let client = PostgresClient(connectionString: server.connectionString, configuration: pool)
        let admin = PostgresClient(connectionString: server.connectionString)
        let table = uniqueTable("read_only_rows")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (n int)")
        func backend() async throws -> Int32 {
            try #require(try await client.query("SELECT pg_backend_pid()").first).decode(Int32.self, at: 0)
        }

        // The caller's own read-only transaction: the connection stays.
        let first = try await backend()
        let refused = try await #require(throws: PostgresError.self) {
            try await client.withTransaction(readOnly: true) { connection in
                try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (1)")
            }
        }
        #expect(refused.sqlState == "25006")
        #expect(try await backend() == first)

        // The server turns read-only (as an old primary does when it rejoins as a standby).
        try await admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        try await admin.execute("SELECT pg_reload_conf()")
        try await waitUntil(30) {
            do {
                try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (2)")
                return false  // before the backend read the new configuration
            } catch let error as PostgresError {
                return error.sqlState == "25006"
            }
        }
        try await admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
        try await admin.execute("SELECT pg_reload_conf()")
        // The refused connection was not returned to the pool: the next statement has a new one.
        #expect(try await backend() != first)
        try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (3)")
        await client.shutdown()
        await admin.shutdown()
        await server.stop()
    }
}
