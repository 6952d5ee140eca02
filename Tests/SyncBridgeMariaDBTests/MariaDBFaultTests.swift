import CMariaDB
import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgeTesting
import Testing

@Suite("MariaDB faults: the pool fails fast with the real error")
struct MariaDBFaultTests {
    @Test(
        "an unreachable port and a wrong password: the first caller and every queued caller get the typed connection error at once, and so do later callers",
        arguments: ["unreachable port", "wrong password"]
    )
    func failFast(fault: String) async throws {
        var configuration = try await testConfiguration()
        if fault == "unreachable port" {
            configuration.port = 1  // nothing listens there
        } else {
            configuration.password = "wrong-s3cret"
        }
        var pool = ConnectionPoolConfiguration()
        pool.acquireTimeout = .seconds(30)
        pool.maximumConnections = 4
        let client = MariaDBClient(configuration: configuration, poolConfiguration: pool)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await client.run() }
            defer { group.cancelAll() }
            let results = try await withDeadline(10) { try await concurrentFailures(of: client) }
            for (error, seconds) in results {
                let error = try #require(error as? MariaDBError, "\(String(describing: error))")
                #expect(error.kind == .connectionFailed)
                #expect(!error.description.contains("s3cret"))
                if fault == "wrong password" { #expect(error.number == 1045) }  // ER_ACCESS_DENIED_ERROR
                if fault == "unreachable port" { #expect(error.host == "\(configuration.host):1") }
                #expect(seconds < 5, "waited \(seconds) s: not at once")
            }
            let later = try await withDeadline(10) { try await concurrentFailures(of: client, count: 5) }
            #expect(later.allSatisfy { ($0.error as? MariaDBError)?.kind == .connectionFailed })
            #expect(later.allSatisfy { $0.seconds < 5 })
        }
    }
}

@Suite("MariaDB faults: dead peers are found")
struct MariaDBKeepaliveTests {
    @Test(
        "TCP connections use keepalives (30 s idle, 10 s apart, 3 probes) and a 30 s user timeout; each is configurable"
    )
    func keepalives() async throws {
        let defaults = try await MariaDBConnection.connect(configuration: testConfiguration())
        #expect(
            try await defaults.withRawConnection {
                keepaliveSettings(of: Int32(truncatingIfNeeded: mysql_get_socket($0)))
            } == [1, 30, 10, 3, 30000]
        )
        await defaults.close()
        var configuration = try await testConfiguration()
        configuration.keepaliveIdle = .seconds(5)
        configuration.tcpUserTimeout = .seconds(7)
        let custom = try await MariaDBConnection.connect(configuration: configuration)
        #expect(
            try await custom.withRawConnection {
                keepaliveSettings(of: Int32(truncatingIfNeeded: mysql_get_socket($0)))
            } == [1, 5, 10, 3, 7000]
        )
        await custom.close()
    }
}

/// A server of its own, frozen mid-statement (`SIGSTOP`, as a host that stopped answering):
/// cancelling and timing out stay bounded in time, and the pool works again once it thaws.
@Suite("MariaDB faults: a frozen server", .serialized)
struct MariaDBFrozenServerTests {
    func withFrozenServer(
        statementTimeout: Duration? = nil,
        _ body: @escaping @Sendable (Task<[SQLRow], any Error>) async throws -> Void
    ) async throws {
        let server = try await TemporaryMariaDB.start()
        var pool = ConnectionPoolConfiguration()
        pool.maximumConnections = 2
        let client = MariaDBClient(
            configuration: configuration(for: server),
            poolConfiguration: pool,
            cancellationGracePeriod: .seconds(1)
        )
        let observer = try await MariaDBConnection.connect(configuration: configuration(for: server))
        do {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await client.run() }
                defer { group.cancelAll() }
                let statement = Task { try await client.query("SELECT SLEEP(30)", timeout: statementTimeout) }
                try await waitUntil {
                    try await observer.query(
                        "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%SLEEP(30)%' AND INFO NOT LIKE '%PROCESSLIST%'"
                    ).first?.decode(Int.self, at: 0) == 1
                }
                server.freeze()
                defer { server.thaw() }
                try await body(statement)
                server.thaw()
                // The pool serves again, and shuts down: every connection closed, its thread ended.
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
        try await withFrozenServer { statement in
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
        "a statement timeout passes while the server is frozen: the typed timeout error within timeout + grace",
        .watchdog(threshold: .milliseconds(200))
    )
    func timeoutFrozen() async throws {
        let start = ContinuousClock.now
        try await withFrozenServer(statementTimeout: .seconds(3)) { statement in
            let outcome = try await withDeadline(15) { await statement.result }
            let waited = (ContinuousClock.now - start).seconds
            let error = try #require(throws: MariaDBError.self) { try outcome.get() }
            #expect(error.kind == .timedOut)
            #expect(waited < 3 + 1 + 1.5 + 1, "the caller waited \(waited) s (timeout 3 s, grace period 1 s)")
        }
    }
}

/// Through a loopback proxy that stops forwarding without closing (a half-open connection) or
/// resets every connection.
@Suite("MariaDB faults: half-open and reset connections")
struct MariaDBProxyFaultTests {
    func withProxiedClient(_ body: @escaping @Sendable (MariaDBClient, FaultProxy) async throws -> Void) async throws {
        let server = try await TemporaryMariaDB.shared()
        let proxy = try FaultProxy(forwardingTo: server.port)
        defer { proxy.stop() }
        var configuration = configuration(for: server)
        configuration.port = proxy.port
        var pool = ConnectionPoolConfiguration()
        pool.maximumConnections = 2
        let client = MariaDBClient(
            configuration: configuration,
            poolConfiguration: pool,
            cancellationGracePeriod: .seconds(1)
        )
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await client.run() }
            defer { group.cancelAll() }
            #expect(try await client.query("SELECT 1").count == 1)
            try await body(client, proxy)
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
            let error = try await #require(throws: MariaDBError.self) {
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
            let statement = Task { try await client.query("SELECT SLEEP(10.01)") }
            try await Self.waitUntilRunning("SELECT SLEEP(10.01)")
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
        let observer = try await MariaDBConnection.connect(configuration: testConfiguration())
        try await waitUntil {
            try await observer.query(
                "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO = \(sql)"
            ).first?.decode(Int.self, at: 0) == 1
        }
        await observer.close()
    }

    @Test("reset: a running statement fails at once with a typed connection error, and the connection is replaced")
    func reset() async throws {
        try await withProxiedClient { client, proxy in
            let statement = Task { try await client.query("SELECT SLEEP(10.02)") }
            try await Self.waitUntilRunning("SELECT SLEEP(10.02)")
            let start = ContinuousClock.now
            proxy.resetAll()
            let outcome = try await withDeadline(10) { await statement.result }
            let waited = (ContinuousClock.now - start).seconds
            let error = try #require(throws: MariaDBError.self) { try outcome.get() }
            #expect(error.kind == .connectionClosed)
            #expect(waited < 1.5, "waited \(waited) s")
        }
    }
}

@Suite("MariaDB faults: the server is killed under load")
struct MariaDBKillTests {
    @Test(
        "killed under 100 tasks: every task ends within about a second with a typed connection error; after a restart the pool recovers and every acknowledged row is there exactly once"
    )
    func killUnderLoad() async throws {
        let server = try await TemporaryMariaDB.start()
        var pool = ConnectionPoolConfiguration()
        pool.maximumConnections = 8
        pool.acquireTimeout = .seconds(30)
        let client = MariaDBClient(configuration: configuration(for: server), poolConfiguration: pool)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await client.run() }
            defer { group.cancelAll() }
            try await client.execute("CREATE TABLE killed (id int PRIMARY KEY) ENGINE = InnoDB")
            let killedAt = Shared<ContinuousClock.Instant?>(nil)
            let run = try await withDeadline(60) {
                try await insertsUntilFailure(
                    client: client,
                    table: "killed",
                    isConnectionError: { error in
                        guard let error = error as? MariaDBError else { return false }
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
            try await server.relaunch()
            let recovered = ContinuousClock.now
            try await waitUntil(10) { (try? await client.query("SELECT 1")) != nil }
            #expect((ContinuousClock.now - recovered).seconds < 3)
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
