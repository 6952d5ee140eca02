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
