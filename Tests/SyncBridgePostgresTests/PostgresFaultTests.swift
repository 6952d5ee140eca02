import CLibPQ
import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgePostgres
import SyncBridgeTesting
import Testing

@Suite("PostgreSQL faults: the pool fails fast with the real error")
struct PostgresFaultTests {
    /// A pool whose acquire timeout (30 s) is far longer than anything these tests allow.
    static var patientPool: ConnectionPoolConfiguration {
        var configuration = ConnectionPoolConfiguration()
        configuration.acquireTimeout = .seconds(30)
        configuration.maximumConnections = 4
        return configuration
    }

    @Test(
        "an unreachable port and a wrong password: the first caller and every queued caller get the typed connection error at once, and so do later callers",
        arguments: ["unreachable port", "wrong password"]
    )
    func failFast(fault: String) async throws {
        let server = try await TemporaryPostgres.shared()
        let closedPort = 1  // nothing listens there
        let connectionString =
            fault == "unreachable port"
            ? "host=127.0.0.1 port=\(closedPort) dbname=x user=x password=s3cret-pw connect_timeout=5"
            : "host=127.0.0.1 port=\(server.port) dbname=\(server.database) user=\(server.user) password=wrong-s3cret"
        let client = PostgresClient(connectionString: connectionString, configuration: Self.patientPool)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await client.run() }
            defer { group.cancelAll() }
            let results = try await withDeadline(10) { try await concurrentFailures(of: client) }
            for (error, seconds) in results {
                let error = try #require(error as? PostgresError, "\(String(describing: error))")
                #expect(error.kind == .connectionFailed)
                #expect(!error.description.contains("s3cret"))
                if fault == "wrong password" { #expect(error.message.contains("password authentication failed")) }
                if fault == "unreachable port" { #expect(error.host == "127.0.0.1:\(closedPort)") }
                #expect(seconds < 5, "waited \(seconds) s: not at once")
            }
            // Later callers fail at once too, with the same typed error, while nothing connects.
            let later = try await withDeadline(10) { try await concurrentFailures(of: client, count: 5) }
            #expect(later.allSatisfy { ($0.error as? PostgresError)?.kind == .connectionFailed })
            #expect(later.allSatisfy { $0.seconds < 5 })
        }
    }
}

@Suite("PostgreSQL faults: cancel requests")
struct PostgresCancelRequestTests {
    @Test("libpq 17's encrypted cancel connections are used exactly when the libpq loaded has them; PQcancel otherwise")
    func cancelAPI() {
        // On these machines libpq is 15: every cancellation test runs the PQcancel path.
        #expect(PostgresCanceller.usesCancelConnections == (PQlibVersion() >= 170_000))
    }
}

@Suite("PostgreSQL faults: dead peers are found")
struct PostgresKeepaliveTests {
    @Test(
        "TCP connections use keepalives (30 s idle, 10 s apart, 3 probes) and a 30 s user timeout unless the connection string says otherwise"
    )
    func keepalives() async throws {
        let server = try await TemporaryPostgres.shared()
        let defaults = try await PostgresConnection.connect(server.connectionString)
        #expect(try await defaults.withRawConnection { keepaliveSettings(of: PQsocket($0)) } == [1, 30, 10, 3, 30000])
        await defaults.close()
        let overridden = try await PostgresConnection.connect(
            server.connectionString + " keepalives_idle=5 tcp_user_timeout=7000"
        )
        #expect(try await overridden.withRawConnection { keepaliveSettings(of: PQsocket($0)) } == [1, 5, 10, 3, 7000])
        await overridden.close()
    }
}

/// A server of its own, frozen mid-statement (`SIGSTOP`, as a host that stopped answering):
/// cancelling and timing out stay bounded in time, and the pool works again once it thaws.
@Suite("PostgreSQL faults: a frozen server", .serialized)
struct PostgresFrozenServerTests {
    /// Runs `body` with a client (one connection, grace period 1 s) whose statement is running
    /// when the server freezes; thaws the server and checks the pool afterwards.
    func withFrozenServer(
        _ body: @escaping @Sendable (PostgresClient, Task<[SQLRow], any Error>) async throws -> Void,
        statementTimeout: Duration? = nil
    ) async throws {
        let server = try await TemporaryPostgres.start()
        var pool = ConnectionPoolConfiguration()
        pool.maximumConnections = 2
        let client = PostgresClient(
            configuration: PostgresConfiguration(connectionString: server.connectionString),
            poolConfiguration: pool,
            cancellationGracePeriod: .seconds(1)
        )
        let observer = try await PostgresConnection.connect(server.connectionString)
        do {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await client.run() }
                defer { group.cancelAll() }
                let statement = Task { try await client.query("SELECT pg_sleep(30)", timeout: statementTimeout) }
                try await waitUntil {
                    try await observer.query(
                        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'"
                    )
                    .first?.decode(Int.self, at: 0) == 1
                }
                server.freeze()
                defer { server.thaw() }
                try await body(client, statement)
                server.thaw()
                // The pool serves again, and shuts down: every connection closed, its thread
                // ended (the abandoned one's blocked call returned when its socket was shut down).
                let one = try await withDeadline(20) {
                    try await client.query("SELECT 1").first?.decode(Int.self, at: 0)
                }
                #expect(one == 1)
                try await withDeadline(20) { await client.shutdown() }
            }
        } catch {
            server.thaw()
            await observer.close()
            await server.stop()
            throw error
        }
        await observer.close()
        await server.stop()
    }

    @Test(
        "cancel() returns at once and the caller gets CancellationError within the grace period",
        .watchdog(threshold: .milliseconds(200))
    )
    func cancelFrozen() async throws {
        try await withFrozenServer { _, statement in
            let start = ContinuousClock.now
            statement.cancel()
            let cancelTook = (ContinuousClock.now - start).seconds
            #expect(cancelTook < 0.1, "cancel() took \(cancelTook) s")
            let outcome = try await withDeadline(10) { await statement.result }
            let waited = (ContinuousClock.now - start).seconds
            #expect(throws: CancellationError.self) { try outcome.get() }
            #expect(waited < 1 + 1.5, "the caller waited \(waited) s (grace period 1 s)")
        }
    }

    @Test(
        "a statement timeout fires while the server is frozen: the typed timeout error within timeout + grace",
        .watchdog(threshold: .milliseconds(200))
    )
    func timeoutFrozen() async throws {
        let start = ContinuousClock.now
        try await withFrozenServer(
            { _, statement in
                let outcome = try await withDeadline(15) { await statement.result }
                let waited = (ContinuousClock.now - start).seconds
                let error = try #require(throws: PostgresError.self) { try outcome.get() }
                #expect(error.kind == .timedOut)
                #expect(waited < 3 + 1 + 1.5, "the caller waited \(waited) s (timeout 3 s, grace period 1 s)")
            },
            statementTimeout: .seconds(3)
        )
    }
}

/// Through a loopback proxy that stops forwarding without closing (a half-open connection) or
/// resets every connection.
@Suite("PostgreSQL faults: half-open and reset connections")
struct PostgresProxyFaultTests {
    func withProxiedClient(_ body: @escaping @Sendable (PostgresClient, FaultProxy) async throws -> Void) async throws {
        let server = try await TemporaryPostgres.shared()
        let proxy = try FaultProxy(forwardingTo: server.port)
        defer { proxy.stop() }
        var pool = ConnectionPoolConfiguration()
        pool.maximumConnections = 2
        let client = PostgresClient(
            configuration: PostgresConfiguration(
                connectionString:
                    "host=127.0.0.1 port=\(proxy.port) dbname=\(server.database) user=\(server.user) password=\(server.password)"
            ),
            poolConfiguration: pool,
            cancellationGracePeriod: .seconds(1)
        )
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await client.run() }
            defer { group.cancelAll() }
            #expect(try await client.query("SELECT 1").count == 1)
            try await body(client, proxy)
            // The connection is replaced: the pool works through the proxy again.
            proxy.resume()
            let two = try await withDeadline(20) { try await client.query("SELECT 2").first?.decode(Int.self, at: 0) }
            #expect(two == 2)
        }
    }

    @Test("half-open: a statement with a timeout ends with the typed timeout error within timeout + grace")
    func halfOpenTimeout() async throws {
        try await withProxiedClient { client, proxy in
            proxy.pause()
            let start = ContinuousClock.now
            let error = try await #require(throws: PostgresError.self) {
                try await withDeadline(10) { try await client.query("SELECT 1", timeout: .seconds(1)) }
            }
            let waited = (ContinuousClock.now - start).seconds
            #expect(error.kind == .timedOut)
            #expect(waited < 1 + 1 + 1.5, "waited \(waited) s (timeout 1 s, grace period 1 s)")
        }
    }

    @Test("half-open: a cancelled statement ends with CancellationError within the grace period")
    func halfOpenCancel() async throws {
        try await withProxiedClient { client, proxy in
            let statement = Task { try await client.query("SELECT pg_sleep(10.01)") }
            try await Self.waitUntilRunning("SELECT pg_sleep(10.01)")
            proxy.pause()
            let start = ContinuousClock.now
            statement.cancel()
            let outcome = try await withDeadline(10) { await statement.result }
            let waited = (ContinuousClock.now - start).seconds
            #expect(throws: CancellationError.self) { try outcome.get() }
            #expect(waited < 1 + 1.5, "waited \(waited) s (grace period 1 s)")
        }
    }

    /// Returns once the server runs `sql` (seen from a direct connection).
    static func waitUntilRunning(_ sql: String) async throws {
        let observer = try await PostgresConnection.connect(TemporaryPostgres.shared().connectionString)
        try await waitUntil {
            try await observer.query("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = \(sql)")
                .first?.decode(Int.self, at: 0) == 1
        }
        await observer.close()
    }

    @Test("reset: a running statement fails at once with a typed connection error, and the connection is replaced")
    func reset() async throws {
        try await withProxiedClient { client, proxy in
            let statement = Task { try await client.query("SELECT pg_sleep(10.02)") }
            try await Self.waitUntilRunning("SELECT pg_sleep(10.02)")
            let start = ContinuousClock.now
            proxy.resetAll()
            let outcome = try await withDeadline(10) { await statement.result }
            let waited = (ContinuousClock.now - start).seconds
            let error = try #require(throws: PostgresError.self) { try outcome.get() }
            #expect(error.kind == .connectionClosed)
            #expect(waited < 1.5, "waited \(waited) s")
        }
    }
}

@Suite("PostgreSQL faults: the server is killed under load")
struct PostgresKillTests {
    @Test(
        "killed under 100 tasks: every task ends within about a second with a typed connection error; after a restart the pool recovers and every acknowledged row is there exactly once"
    )
    func killUnderLoad() async throws {
        let server = try await TemporaryPostgres.start()
        var pool = ConnectionPoolConfiguration()
        pool.maximumConnections = 8
        pool.acquireTimeout = .seconds(30)
        // The throwaway server acknowledges commits before writing them (synchronous_commit=off,
        // for speed); this test counts on commits that survive a crash.
        let client = PostgresClient(
            connectionString: server.connectionString + " options='-c synchronous_commit=on'",
            configuration: pool
        )
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await client.run() }
            defer { group.cancelAll() }
            try await client.execute("CREATE TABLE killed (id int PRIMARY KEY)")
            let killedAt = Shared<ContinuousClock.Instant?>(nil)
            let run = try await withDeadline(60) {
                try await insertsUntilFailure(
                    client: client,
                    table: "killed",
                    isConnectionError: { error in
                        guard let error = error as? PostgresError else { return false }
                        return error.kind == .connectionClosed || error.kind == .connectionFailed
                    },
                    kill: {
                        killedAt.withLock { $0 = .now }
                        try await server.crash()
                    }
                )
            }
            let killed = try #require(killedAt.value)
            #expect(run.unexpected.isEmpty, "\(run.unexpected.prefix(3))")
            #expect(run.failed.count == 100, "every task ended with an error")
            let lastEnd = try #require(run.endedAt.max())
            // 10–15 ms on an idle machine; the bound leaves room for a CI machine that runs the
            // whole suite beside it.
            #expect(
                (lastEnd - killed).seconds < 3,
                "the last task ended \((lastEnd - killed).seconds) s after the kill"
            )
            // Back up: the pool serves again within a few seconds, without a restart of the client.
            try await server.relaunch()
            let recovered = ContinuousClock.now
            try await waitUntil(10) { (try? await client.query("SELECT 1")) != nil }
            #expect((ContinuousClock.now - recovered).seconds < 3)
            // Every acknowledged insert is there, once; of the failed ones, at most those that were
            // in flight.
            let rows = Set(try await client.query("SELECT id FROM killed").map { try $0.decode(Int.self, at: 0) })
            #expect(
                run.acknowledged.isSubset(of: rows),
                "\(run.acknowledged.subtracting(rows).count) acknowledged rows missing"
            )
            #expect(rows.subtracting(run.acknowledged).isSubset(of: Set(run.failed.keys)))
        }
        await server.stop()
    }
}
