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
                #expect(seconds < 5 * Double(slowdown), "waited \(seconds) s: not at once")
            }
            let later = try await withDeadline(10) { try await concurrentFailures(of: client, count: 5) }
            #expect(later.allSatisfy { ($0.error as? MariaDBError)?.kind == .connectionFailed })
            #expect(later.allSatisfy { $0.seconds < 5 * Double(slowdown) })
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

extension FaultTarget where Session == MariaDBSession {
    /// The scenarios' view of `server`; `observer` is a connection of its own to it.
    static func mariaDB(_ server: TemporaryMariaDB, observer: MariaDBConnection) -> FaultTarget {
        FaultTarget(
            port: server.port,
            makeClient: { port in
                var configuration = configuration(for: server)
                configuration.port = port ?? server.port
                var pool = ConnectionPoolConfiguration()
                pool.maximumConnections = 2
                return MariaDBClient(
                    configuration: configuration,
                    poolConfiguration: pool,
                    cancellationGracePeriod: .seconds(gracePeriod)
                )
            },
            sleep: { seconds in "SELECT SLEEP(\(unsafeSQL: String(seconds)))" },
            isRunning: { seconds in
                // A statement with a timeout runs as `SET STATEMENT max_statement_time=… FOR …`.
                let pattern = "%SELECT SLEEP(\(seconds))"
                return try await observer.query(
                    "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE \(pattern)"
                ).first?.decode(Int.self, at: 0) == 1
            },
            isTimeout: { ($0 as? MariaDBError)?.kind == .timedOut },
            isConnectionClosed: { ($0 as? MariaDBError)?.kind == .connectionClosed }
        )
    }
}

/// Runs `body` with the scenarios' view of `server` (or of the shared server).
func withFaultTarget(
    _ server: TemporaryMariaDB? = nil,
    _ body: (FaultTarget<MariaDBSession>) async throws -> Void
) async throws {
    let server = if let server { server } else { try await TemporaryMariaDB.shared() }
    let observer = try await MariaDBConnection.connect(configuration: configuration(for: server))
    do {
        try await body(.mariaDB(server, observer: observer))
    } catch {
        await observer.close()
        throw error
    }
    await observer.close()
}

/// A server of its own, frozen mid-statement (`SIGSTOP`, as a host that stopped answering):
/// cancelling and timing out stay bounded in time, and the pool works again once it thaws.
@Suite("MariaDB faults: a frozen server", .serialized, .enabled(if: timedTestsEnabled, timedTestsNote))
struct TimedMariaDBFrozenServerTests {
    @Test(
        "cancel() returns at once and the caller gets CancellationError within the grace period",
        .watchdog(threshold: .milliseconds(200 * slowdown))
    )
    func cancelFrozen() async throws {
        let server = try await TemporaryMariaDB.start()
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
        let server = try await TemporaryMariaDB.start()
        try await withFaultTarget(server) {
            try await $0.timeoutOnFrozenServer(freeze: server.freeze, thaw: server.thaw)
        }
        await server.stop()
    }
}

/// Through a loopback proxy that stops forwarding without closing (a half-open connection) or
/// resets every connection.
@Suite("MariaDB faults: half-open and reset connections", .enabled(if: timedTestsEnabled, timedTestsNote))
struct TimedMariaDBProxyFaultTests {
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

@Suite("MariaDB faults: the server is killed under load", .enabled(if: timedTestsEnabled, timedTestsNote))
struct TimedMariaDBKillTests {
    @Test(
        "killed under 100 tasks: every task ends within about a second with a typed connection error; after a restart the pool recovers and every acknowledged row is there exactly once"
    )
    func killUnderLoad() async throws {
        let server = try await TemporaryMariaDB.start()
        var pool = ConnectionPoolConfiguration()
        pool.maximumConnections = 8
        pool.acquireTimeout = .seconds(30)
        let client = MariaDBClient(configuration: configuration(for: server), poolConfiguration: pool)
        try await SharedTestSupport.killUnderLoad(
            client: client,
            createTable: "CREATE TABLE killed (id int PRIMARY KEY) ENGINE = InnoDB",
            isConnectionError: {
                [MariaDBError.Kind.connectionClosed, .connectionFailed].contains(($0 as? MariaDBError)?.kind)
            },
            crash: server.crash,
            relaunch: server.relaunch
        )
        await server.stop()
    }
}
