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
