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
                #expect(seconds < 5 * Double(slowdown), "waited \(seconds) s: not at once")
            }
            // Later callers fail at once too, with the same typed error, while nothing connects.
            let later = try await withDeadline(10) { try await concurrentFailures(of: client, count: 5) }
            #expect(later.allSatisfy { ($0.error as? PostgresError)?.kind == .connectionFailed })
            #expect(later.allSatisfy { $0.seconds < 5 * Double(slowdown) })
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

extension FaultTarget where Session == PostgresSession {
    /// The scenarios' view of `server`; `observer` is a connection of its own to it.
    static func postgres(_ server: TemporaryPostgres, observer: PostgresConnection) -> FaultTarget {
        FaultTarget(
            port: server.port,
            makeClient: { port in
                var pool = ConnectionPoolConfiguration()
                pool.maximumConnections = 2
                return PostgresClient(
                    configuration: PostgresConfiguration(
                        connectionString:
                            "host=127.0.0.1 port=\(port ?? server.port) dbname=\(server.database) user=\(server.user) password=\(server.password)"
                    ),
                    poolConfiguration: pool,
                    cancellationGracePeriod: .seconds(gracePeriod)
                )
            },
            sleep: { seconds in "SELECT pg_sleep(\(unsafeSQL: String(seconds)))" },
            isRunning: { seconds in
                let sql = "SELECT pg_sleep(\(seconds))"
                return try await observer.query(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = \(sql)"
                ).first?.decode(Int.self, at: 0) == 1
            },
            isTimeout: { ($0 as? PostgresError)?.kind == .timedOut },
            isConnectionClosed: { ($0 as? PostgresError)?.kind == .connectionClosed }
        )
    }
}

/// Runs `body` with the scenarios' view of `server` (or of the shared server).
func withFaultTarget(
    _ server: TemporaryPostgres? = nil,
    _ body: (FaultTarget<PostgresSession>) async throws -> Void
) async throws {
    let server = if let server { server } else { try await TemporaryPostgres.shared() }
    let observer = try await PostgresConnection.connect(server.connectionString)
    do {
        try await body(.postgres(server, observer: observer))
    } catch {
        await observer.close()
        throw error
    }
    await observer.close()
}

/// A server of its own, frozen mid-statement (`SIGSTOP`, as a host that stopped answering):
/// cancelling and timing out stay bounded in time, and the pool works again once it thaws.
@Suite("PostgreSQL faults: a frozen server", .serialized, .enabled(if: timedTestsEnabled, timedTestsNote))
struct TimedPostgresFrozenServerTests {
    @Test(
        "cancel() returns at once and the caller gets CancellationError within the grace period",
        .watchdog(threshold: .milliseconds(200 * slowdown))
    )
    func cancelFrozen() async throws {
        let server = try await TemporaryPostgres.start()
        try await withFaultTarget(server) {
            try await $0.cancelOnFrozenServer(freeze: server.freeze, thaw: server.thaw)
        }
        await server.stop()
    }

    @Test(
        "a statement timeout passes while the server is frozen: the typed timeout error within timeout + grace",
        .watchdog(threshold: .milliseconds(200 * slowdown))
    )
    func timeoutFrozen() async throws {
        let server = try await TemporaryPostgres.start()
        try await withFaultTarget(server) {
            try await $0.timeoutOnFrozenServer(freeze: server.freeze, thaw: server.thaw)
        }
        await server.stop()
    }
}

/// Through a loopback proxy that stops forwarding without closing (a half-open connection) or
/// resets every connection.
@Suite("PostgreSQL faults: half-open and reset connections", .enabled(if: timedTestsEnabled, timedTestsNote))
struct TimedPostgresProxyFaultTests {
    @Test("half-open: a statement with a timeout ends with the typed timeout error within timeout + grace")
    func halfOpenTimeout() async throws {
        try await withFaultTarget { try await $0.halfOpenTimeout() }
    }

    @Test("half-open: a cancelled statement ends with CancellationError within the grace period")
    func halfOpenCancel() async throws {
        try await withFaultTarget { try await $0.halfOpenCancel() }
    }

    @Test("reset: a running statement fails at once with a typed connection error, and the connection is replaced")
    func reset() async throws {
        try await withFaultTarget { try await $0.resetMidStatement() }
    }
}

@Suite("PostgreSQL faults: the server is killed under load", .enabled(if: timedTestsEnabled, timedTestsNote))
struct TimedPostgresKillTests {
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
        try await SharedTestSupport.killUnderLoad(
            client: client,
            createTable: "CREATE TABLE killed (id int PRIMARY KEY)",
            isConnectionError: {
                [PostgresError.Kind.connectionClosed, .connectionFailed].contains(($0 as? PostgresError)?.kind)
            },
            crash: server.crash,
            relaunch: server.relaunch
        )
        await server.stop()
    }
}
