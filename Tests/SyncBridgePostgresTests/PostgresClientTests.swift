import Foundation
import Logging
import MetricsTestKit
import ServiceLifecycle
import SharedTestSupport
import SyncBridge
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

@Suite("PostgreSQL client and pool")
struct PostgresClientTests {
    func makeClient(
        _ server: TemporaryPostgres,
        application: String,
        configure: (inout ConnectionPoolConfiguration) -> Void = { _ in }
    ) -> PostgresClient {
        var configuration = ConnectionPoolConfiguration()
        configure(&configuration)
        return PostgresClient(
            connectionString: server.connectionString + " application_name=\(application)",
            configuration: configuration,
            name: application
        )
    }

    /// Leases a connection in a task of its own until `release` opens; returns once it is held.
    func holdTheConnection(_ client: PostgresClient) async throws -> (release: Gate, holder: Task<Void, any Error>) {
        let holding = Gate()
        let release = Gate()
        let holder = Task {
            try await client.withConnection { _ in
                holding.open()
                try await release.wait()
            }
        }
        try await holding.wait()
        return (release, holder)
    }

    /// Runs queries until one succeeds (at most 100 tries), so that the pool has an open
    /// connection.
    func warmUp(_ client: PostgresClient) async throws {
        for _ in 0..<100 {
            if (try? await client.query("SELECT 1")) != nil { return }
        }
        Issue.record("the pool never opened a connection")
    }

    func backendPID(_ client: PostgresClient) async throws -> Int32 {
        try #require(try await client.query("SELECT pg_backend_pid()").first).decode(Int32.self, at: 0)
    }

    @Test("connections are reused, never more than the maximum, and closed at shutdown")
    func reuseAndShutdown() async throws {
        let server = try await TemporaryPostgres.shared()
        // 100 statements at once through 2 connections: under ThreadSanitizer the last of them
        // waits longer than the default acquire timeout.
        let client = makeClient(server, application: "sb-reuse") {
            $0.maximumConnections = 2
            $0.acquireTimeout = .seconds(60)
        }
        let pids = try await withThrowingTaskGroup(of: Int32.self) { group in
            for _ in 0..<100 { group.addTask { try await backendPID(client) } }
            return try await group.reduce(into: Set<Int32>()) { $0.insert($1) }
        }
        #expect((1...2).contains(pids.count))
        #expect(client.pool.statistics.leased == 0)
        await client.shutdown()
        // Closing sends Terminate; each backend then exits on its own, a moment later.
        let observer = try await connectToTestServer()
        var remaining: Int? = nil
        let deadline = ContinuousClock.now + .seconds(10)
        repeat {
            remaining = try await observer.query(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sb-reuse'"
            ).first?.decode(Int.self, at: 0)
        } while remaining != 0 && ContinuousClock.now < deadline
        #expect(remaining == 0)
        let refused = try await #require(throws: ConnectionPoolError.self) { try await client.query("SELECT 1") }
        #expect(refused.code == .shutDown)
        await observer.close()
    }

    @Test(
        "the pool's metrics carry OpenTelemetry's names: connections by state, the maximum, pending requests, waits, timeouts, connect times"
    )
    func poolMetrics() async throws {
        let server = try await TemporaryPostgres.shared()
        let metrics = TestMetrics()
        var configuration = ConnectionPoolConfiguration()
        configuration.maximumConnections = 1
        configuration.acquireTimeout = .milliseconds(300)
        let client = PostgresClient(
            connectionString: server.connectionString,
            configuration: configuration,
            name: "measured",
            metricsFactory: metrics
        )
        try await warmUp(client)
        let pool = [("db.client.connection.pool.name", "measured")]
        func connections(_ state: String) throws -> Double? {
            try metrics.expectMeter("db.client.connection.count", pool + [("db.client.connection.state", state)])
                .lastValue
        }
        // Under load, the warm-up's first leases may have timed out too: count from here.
        func timeouts() -> Int64 {
            (try? metrics.expectCounter("db.client.connection.timeouts", pool).totalValue) ?? 0
        }
        let timeoutsBefore = timeouts()
        let (release, holder) = try await holdTheConnection(client)
        #expect(try connections("used") == 1)
        #expect(try connections("idle") == 0)
        await #expect(throws: ConnectionPoolError.self) { try await client.query("SELECT 1") }
        release.open()
        try await holder.value
        #expect(try connections("used") == 0)
        #expect(try connections("idle") == 1)
        #expect(timeouts() == timeoutsBefore + 1)
        #expect(try metrics.expectMeter("db.client.connection.max", pool).lastValue == 1)
        let pending = try metrics.expectMeter("db.client.connection.pending_requests", pool)
        #expect(pending.values.contains(1), "the timed-out request waited: \(pending.values)")
        #expect(pending.lastValue == 0)
        #expect(try metrics.expectTimer("db.client.connection.create_time", pool).values.count == 1)
        #expect(try metrics.expectTimer("db.client.connection.wait_time", pool).values.count >= 2)
        await client.shutdown()
    }

    @Test("the acquire timeout is a typed error that states the pool's size and how many are busy")
    func acquireTimeout() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-timeout") {
            $0.maximumConnections = 1
            $0.acquireTimeout = .milliseconds(200)
        }
        // Open the one connection first: on a loaded machine connecting alone can take longer
        // than the 200 ms this test gives a lease.
        try await warmUp(client)
        let (release, holder) = try await holdTheConnection(client)
        let error = try await #require(throws: ConnectionPoolError.self) { try await client.query("SELECT 1") }
        #expect(error.code == .acquireTimeout)
        #expect(error.busyConnections == 1)
        #expect(error.maximumConnections == 1)
        #expect(error.description.contains("1 of 1 connections busy"))
        release.open()
        try await holder.value
        #expect(try await client.query("SELECT 1").count == 1)
        await client.shutdown()
    }

    @Test("shutdown waits for leased connections to come back")
    func shutdownWaitsForLeases() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-drain")
        let holding = Gate()
        let release = Gate()
        let finished = Shared(false)
        let holder = Task {
            try await client.withConnection { connection in
                holding.open()
                try await release.wait()
                // Still usable while the pool drains.
                return try await connection.query("SELECT 1").count
            }
        }
        try await holding.wait()
        let shutdown = Task {
            await client.shutdown()
            finished.withLock { $0 = true }
        }
        // New leases are refused at once, while the leased connection is still out.
        let refused = try await #require(throws: ConnectionPoolError.self) { try await client.query("SELECT 1") }
        #expect(refused.code == .shutDown)
        #expect(!finished.value)
        release.open()
        #expect(try await holder.value == 1)
        await shutdown.value
        #expect(finished.value)
    }

    @Test("pg_terminate_backend on a leased connection: typed error, the connection is discarded")
    func terminatedBackend() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-terminate") { $0.maximumConnections = 1 }
        let observer = try await connectToTestServer()
        let error = try await #require(throws: PostgresError.self) {
            try await client.withConnection { connection in
                let pid = try #require(try await connection.query("SELECT pg_backend_pid()").first).decode(
                    Int32.self,
                    at: 0
                )
                try await observer.execute("SELECT pg_terminate_backend(\(pid))")
                try await connection.query("SELECT 1")
            }
        }
        #expect(error.kind == .connectionClosed, "\(error)")
        // The next query gets a new connection.
        #expect(try await client.query("SELECT 7").first?.decode(Int.self, at: 0) == 7)
        await observer.close()
        await client.shutdown()
    }

    @Test(
        "pg_terminate_backend on an idle connection: its I/O thread finds it over at once, and the pool never leases it again",
        .enabled(if: SQLIOThreads.processDefault.areOn, "a connection's own thread does not watch it while idle")
    )
    func terminatedWhileIdle() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-idle-terminate") { $0.maximumConnections = 1 }
        let observer = try await connectToTestServer()
        let (pooled, pid) = try await client.withConnection { connection in
            let row = try #require(try await connection.query("SELECT pg_backend_pid()").first)
            return (connection, try row.decode(Int32.self, at: 0))
        }
        #expect(pooled.isUsable)
        try await observer.execute("SELECT pg_terminate_backend(\(pid))")
        // Found without a statement on it.
        try await waitUntil { !pooled.isUsable }
        // The pool opens another: no call sees the closed one.
        let next = try #require(try await client.query("SELECT pg_backend_pid()").first).decode(Int32.self, at: 0)
        #expect(next != pid)
        await observer.close()
        await client.shutdown()
    }

    @Test("2,000 tasks x 5 inserts over 8 connections: every row exactly once; the cooperative pool stays free")
    func load() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-load") {
            $0.maximumConnections = 8
            $0.acquireTimeout = .seconds(60)
        }
        let table = uniqueTable("load")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (task int, item int, PRIMARY KEY (task, item))")
        // A task that ticks every millisecond: its longest wait between two ticks is how long the
        // cooperative pool was unavailable while 2,000 tasks queued for 8 connections.
        let probe = Shared((ticks: 0, last: ContinuousClock.now, longestGap: Duration.zero))
        let probeTask = Task {
            while !Task.isCancelled {
                let now = ContinuousClock.now
                probe.withLock { probe in
                    probe.ticks += 1
                    probe.longestGap = max(probe.longestGap, now - probe.last)
                    probe.last = now
                }
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<2_000 {
                group.addTask {
                    for item in 0..<5 {
                        try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(task), \(item))")
                    }
                }
            }
            try await group.waitForAll()
        }
        probeTask.cancel()
        let finished = ContinuousClock.now
        let (ticks, longestGap) = probe.withLock { ($0.ticks, max($0.longestGap, finished - $0.last)) }
        let counts = try #require(
            try await client.query("SELECT count(*), count(DISTINCT (task, item)) FROM \(unsafeSQL: table)").first
        ).decode((Int, Int).self)
        #expect(counts.0 == 10_000)
        #expect(counts.1 == 10_000)
        // Other tests of the suite run beside this one (some block cooperative threads on purpose,
        // and under ThreadSanitizer the whole suite starves the pool for up to tens of seconds),
        // so the bound is generous; a pool held by the statements would starve the probe for the
        // whole run.
        #expect(
            ticks > 1 && longestGap < .seconds(slowdown > 1 ? 4 * slowdown : 2),
            "the probe task starved: \(ticks) ticks, longest wait \(longestGap)"
        )
        await client.shutdown()
    }

    @Test("a server restart under load: typed errors for in-flight queries, reconnection, success afterwards")
    func serverRestart() async throws {
        let server = try await TemporaryPostgres.start()
        let client = makeClient(server, application: "sb-restart") {
            $0.maximumConnections = 8
            // Under ThreadSanitizer the whole suite starves the tasks for tens of seconds.
            $0.acquireTimeout = .seconds(30 * slowdown)
            $0.initialBackoff = .milliseconds(50)
        }
        let outcomes = try await withDeadline(60) {
            try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<100 {
                    group.addTask {
                        do {
                            try await client.query("SELECT pg_sleep(0.5)")
                            return "ok"
                        } catch let error as PostgresError {
                            return "\(error.kind)"
                        }
                    }
                }
                // One statement that cannot end before the restart, whatever the machine's speed
                // (a ThreadSanitizer run can stall the test's tasks for longer than the load lasts).
                group.addTask {
                    do {
                        try await client.query("SELECT pg_sleep(3600)")
                        return "long statement ended"
                    } catch let error as PostgresError {
                        return "long: \(error.kind)"
                    }
                }
                group.addTask {
                    // Restart once the long statement runs on the server.
                    let observer = try await PostgresConnection.connect(server.connectionString)
                    while try await observer.query(
                        """
                        SELECT count(*) FROM pg_stat_activity
                        WHERE application_name = 'sb-restart' AND state = 'active' AND query = 'SELECT pg_sleep(3600)'
                        """
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
        // After the restart, queries succeed on fresh connections.
        let after = try await withDeadline(30) {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for value in 0..<20 {
                    group.addTask { try await client.query("SELECT \(value)::int").first!.decode(Int.self, at: 0) }
                }
                return try await group.reduce(0, +)
            }
        }
        #expect(after == 190)
        await client.shutdown()
        await server.stop()
    }

    @Test("under load single statements share connections, and exclusive leases still get theirs")
    func sharedStatements() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-lanes") {
            $0.maximumConnections = 2
            $0.acquireTimeout = .seconds(30)
        }
        let table = uniqueTable("lanes")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (task int, item int)")
        let stop = Shared(false)
        let statements = Shared(0)
        let load = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<32 {
                    group.addTask {
                        var item = 0
                        while !stop.value {
                            try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(task), \(item))")
                            item += 1
                            statements.withLock { $0 += 1 }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        // While 32 tasks keep both connections busy, a transaction still gets a connection.
        while statements.value < 200 { try await Task.sleep(for: .milliseconds(5)) }
        let inTransaction = try await withDeadline(30) {
            try await client.withTransaction { connection in
                try await connection.query("SELECT count(*) FROM \(unsafeSQL: table)").first!.decode(Int.self, at: 0)
            }
        }
        #expect(inTransaction >= 200)
        stop.withLock { $0 = true }
        try await load.value
        // Every statement that reported success is in the table, and never more than two
        // connections were open.
        let rows = try #require(try await client.query("SELECT count(*) FROM \(unsafeSQL: table)").first).decode(
            Int.self,
            at: 0
        )
        #expect(rows == statements.value)
        let backends = try #require(
            try await client.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sb-lanes'").first
        ).decode(Int.self, at: 0)
        #expect(backends <= 2)
        await client.shutdown()
    }

    @Test("connections older than the maximum lifetime are replaced")
    func maximumLifetime() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-lifetime") {
            $0.maximumConnections = 1
            $0.maximumLifetime = .milliseconds(100)
        }
        let first = try await backendPID(client)
        let deadline = ContinuousClock.now + .seconds(10)
        var replaced = false
        while !replaced && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            replaced = try await backendPID(client) != first
        }
        #expect(replaced)
        await client.shutdown()
    }

    @Test("the escape hatch through the pool runs on a pooled connection's thread")
    func rawThroughPool() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-raw")
        let (value, thread) = try await client.withRawConnection { pgconn in
            (LegacyPostgres.firstValue(pgconn, "SELECT 6 * 7"), ThreadIdentity.current.name)
        }
        #expect(value == "42")
        #expect(thread.hasPrefix("sb-postgres-"))
        await client.shutdown()
    }
}

@Suite("PostgreSQL client as a service")
struct PostgresClientServiceTests {
    @Test("in a ServiceGroup the client serves queries and shuts its pool down with the group")
    func serviceGroup() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = PostgresClient(connectionString: server.connectionString)
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
