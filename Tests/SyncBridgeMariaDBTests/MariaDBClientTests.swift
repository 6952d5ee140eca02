import CMariaDB
import Foundation
import Logging
import ServiceLifecycle
import SharedTestSupport
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

@Suite("MariaDB client and pool")
struct MariaDBClientTests {
    func makeClient(
        _ configuration: MariaDBConfiguration,
        configure: (inout ConnectionPoolConfiguration) -> Void = { _ in }
    ) -> MariaDBClient {
        var poolConfiguration = ConnectionPoolConfiguration()
        configure(&poolConfiguration)
        return MariaDBClient(configuration: configuration, poolConfiguration: poolConfiguration)
    }

    @Test("2,000 tasks x 5 inserts over 8 connections: every row exactly once, never more than 8 connections")
    func load() async throws {
        let client = makeClient(try await testConfiguration()) {
            $0.maximumConnections = 8
            $0.acquireTimeout = .seconds(60)
        }
        let table = uniqueTable("load")
        try await client.execute(
            "CREATE TABLE \(unsafeSQL: table) (task INT, item INT, connection BIGINT, PRIMARY KEY (task, item))"
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<2_000 {
                group.addTask {
                    for item in 0..<5 {
                        try await client.execute(
                            "INSERT INTO \(unsafeSQL: table) VALUES (\(task), \(item), CONNECTION_ID())"
                        )
                    }
                }
            }
            try await group.waitForAll()
        }
        let counts = try #require(
            try await client.query(
                "SELECT count(*), count(DISTINCT task, item), count(DISTINCT connection) FROM \(unsafeSQL: table)"
            ).first
        ).decode((Int, Int, Int).self)
        #expect(counts.0 == 10_000)
        #expect(counts.1 == 10_000)
        #expect((1...8).contains(counts.2), "\(counts.2) connections")
        #expect(client.pool.statistics.leased == 0)
        await client.shutdown()
    }

    @Test("KILL of a leased connection from outside: typed error, the connection is discarded, the pool goes on")
    func killedConnection() async throws {
        let client = makeClient(try await testConfiguration()) { $0.maximumConnections = 1 }
        let observer = try await connectToTestServer()
        let (error, killedID) = try await client.withConnection { connection -> (MariaDBError?, UInt) in
            try await observer.execute("KILL \(connection.serverConnectionID)")
            do {
                try await connection.query("SELECT 1")
                return (nil, connection.serverConnectionID)
            } catch let error as MariaDBError {
                #expect(!connection.isUsable)
                return (error, connection.serverConnectionID)
            }
        }
        let killed = try #require(error)
        #expect(killed.kind == .connectionClosed, "\(killed)")
        // The next query gets a new connection.
        let id = try #require(try await client.query("SELECT CONNECTION_ID()").first).decode(UInt.self, at: 0)
        #expect(id != killedID)
        await observer.close()
        await client.shutdown()
    }

    @Test(
        "KILL of an idle connection: its I/O thread finds it over at once, and the pool never leases it again",
        .enabled(if: SQLIOThreads.processDefault.areOn, "a connection's own thread does not watch it while idle")
    )
    func killedWhileIdle() async throws {
        let client = makeClient(try await testConfiguration()) { $0.maximumConnections = 1 }
        let observer = try await connectToTestServer()
        let pooled = try await client.withConnection { connection in
            _ = try await connection.query("SELECT 1")
            return connection
        }
        #expect(pooled.isUsable)
        try await observer.execute("KILL \(pooled.serverConnectionID)")
        // Found without a statement on it.
        try await waitUntil { !pooled.isUsable }
        // The pool opens another: no call sees the closed one.
        let id = try #require(try await client.query("SELECT CONNECTION_ID()").first).decode(UInt.self, at: 0)
        #expect(id != pooled.serverConnectionID)
        await observer.close()
        await client.shutdown()
    }

    @Test(
        "a server restart under a load of 100 tasks: typed errors for in-flight queries, reconnection, success afterwards"
    )
    func serverRestart() async throws {
        let server = try await TemporaryMariaDB.start()
        let configuration = configuration(for: server)
        let client = makeClient(configuration) {
            $0.maximumConnections = 8
            // Under ThreadSanitizer the whole suite starves the tasks for tens of seconds.
            $0.acquireTimeout = .seconds(30 * slowdown)
            $0.initialBackoff = .milliseconds(50)
        }
        let outcomes = try await withDeadline(90) {
            try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<100 {
                    group.addTask {
                        do {
                            try await client.query("SELECT SLEEP(0.5)")
                            return "ok"
                        } catch let error as MariaDBError {
                            return "\(error.kind)"
                        }
                    }
                }
                // One statement that cannot end before the restart, whatever the machine's speed
                // (a ThreadSanitizer run can stall the test's tasks for longer than the load lasts).
                group.addTask {
                    do {
                        try await client.query("SELECT SLEEP(3600)")
                        return "long statement ended"
                    } catch let error as MariaDBError {
                        return "long: \(error.kind)"
                    }
                }
                group.addTask {
                    // Restart once the long statement runs on the server.
                    let observer = try await MariaDBConnection.connect(configuration: configuration)
                    while try await observer.query(
                        "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(3600)'"
                    ).first?.decode(Int.self, at: 0) == 0 {
                        try await Task.sleep(for: .milliseconds(5))
                    }
                    await observer.close()
                    try await server.restart()
                    return "restarted"
                }
                return try await group.reduce(into: [String: Int]()) { $0[$1, default: 0] += 1 }
            }
        }
        #expect(outcomes["restarted"] == 1)
        #expect(outcomes["long: connectionClosed"] == 1, "\(outcomes)")
        #expect((outcomes["ok"] ?? 0) + (outcomes["connectionClosed"] ?? 0) == 100, "\(outcomes)")
        let after = try await withDeadline(30) {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for value in 0..<20 {
                    group.addTask { try await client.query("SELECT \(value)").first!.decode(Int.self, at: 0) }
                }
                return try await group.reduce(0, +)
            }
        }
        #expect(after == 190)
        await client.shutdown()
        await server.stop()
    }

    @Test("the escape hatch through the pool runs legacy Connector/C code on a pooled connection's thread")
    func rawThroughPool() async throws {
        let client = makeClient(try await testConfiguration())
        let (value, thread) = try await client.withRawConnection { mysql -> (String?, String) in
            (LegacyMariaDB.firstValue(mysql, "SELECT 6 * 7"), ThreadIdentity.current.name)
        }
        #expect(value == "42")
        #expect(thread.hasPrefix("sb-mariadb-"))
        // Typed queries and legacy code share the pooled connection.
        #expect(try await client.query("SELECT 1").count == 1)
        await client.shutdown()
    }

    @Test("streams through the pool give the connection back when finished or dropped")
    func streamThroughPool() async throws {
        let client = makeClient(try await testConfiguration()) { $0.maximumConnections = 1 }
        let all = try await client.stream("SELECT seq FROM seq_1_to_5000").collect().map {
            try $0.decode(Int.self, at: 0)
        }
        #expect(all == Array(1...5000))
        for try await _ in try await client.stream("SELECT seq FROM seq_1_to_1000000", batchSize: 10) { break }
        let ready = try await withDeadline(10) {
            while client.pool.statistics.leased != 0 { try await Task.sleep(for: .milliseconds(2)) }
            return true
        }
        #expect(ready)
        #expect(try await client.query("SELECT 9").first?.decode(Int.self, at: 0) == 9)
        await client.shutdown()
    }

    @Test("in a ServiceGroup the client serves queries and shuts its pool down with the group")
    func serviceGroup() async throws {
        let client = MariaDBClient(configuration: try await testConfiguration())
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: client)], logger: Logger(label: "test"))
        )
        let running = Task { try await group.run() }
        #expect(try await client.query("SELECT 5").first?.decode(Int.self, at: 0) == 5)
        await group.triggerGracefulShutdown()
        try await withDeadline(30) { try await running.value }
        let refused = try await #require(throws: ConnectionPoolError.self) { try await client.query("SELECT 1") }
        #expect(refused.code == .shutDown)
    }
}

/// Legacy synchronous Connector/C code, as an application would have it.
enum LegacyMariaDB {
    /// The first column of the first row of `sql`, as text.
    static func firstValue(_ mysql: UnsafeMutablePointer<MYSQL>, _ sql: String) -> String? {
        guard mysql_query(mysql, sql) == 0, let result = mysql_store_result(mysql) else { return nil }
        defer { mysql_free_result(result) }
        guard let row = mysql_fetch_row(result), let value = row[0] else { return nil }
        return String(cString: value)
    }
}
