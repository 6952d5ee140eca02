import Foundation
import InMemoryLogging
import Logging
import SharedTestSupport
import SyncBridge
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

@Suite("Live snapshot")
struct PostgresSnapshotTests {
    static let file = "SyncBridgePostgresTests/PostgresSnapshotTests.swift"

    /// A pool of 8 connections, one of them leased by a task of its own until the returned gate
    /// opens; the lease was asked for at the returned line of this file.
    func poolWithHeldLease(
        _ name: String
    ) async throws -> (client: PostgresClient, release: Gate, holder: Task<Void, any Error>, line: Int) {
        let server = try await TemporaryPostgres.shared()
        var configuration = ConnectionPoolConfiguration()
        configuration.maximumConnections = 8
        configuration.acquireTimeout = .seconds(120)
        let client = PostgresClient(connectionString: server.connectionString, configuration: configuration, name: name)
        let (holding, release) = (Gate(), Gate())
        let line = #line + 2
        let holder = Task {
            try await client.withConnection { _ in
                holding.open()
                try await release.wait(seconds: 120)
            }
        }
        try await holding.wait()
        return (client, release, holder, line)
    }

    @Test(
        "64 tasks on 8 connections, one holding its lease: the snapshot names that lease's call site, the waiters and the statements on the connections' threads, and its JSON decodes back"
    )
    func underLoad() async throws {
        let name = uniqueTable("snapshot")
        let (client, release, holder, holdLine) = try await poolWithHeldLease(name)
        let (stop, statements) = (Shared(false), Shared(0))
        let workLine = #line + 4
        let workers = (0..<63).map { _ in
            Task {
                while !stop.value {
                    _ = try await client.withConnection { try await $0.execute("SELECT pg_sleep(0.02)") }
                    statements.withLock { $0 += 1 }
                }
            }
        }
        // 7 connections serve 63 tasks: most of them wait at any moment. Once each connection
        // went from task to task a few times, each lease's age is its own, not the connection's:
        // once the held lease is 2 s old, a worker's lease (one 20 ms statement) is far younger.
        // (Beside the whole suite, a worker's task has been seen resumed 2 s late, its lease as
        // old as that: the snapshot looked for is one where every worker's lease is younger than
        // half the held one's age — with ages counted per connection, none would be.)
        let seen = Shared<SyncBridgeSnapshot?>(nil)
        try await waitUntil(60) {
            guard statements.value >= 100 else { return false }
            let snapshot = SyncBridgeSnapshot.take()
            // On the connections' own threads, or in flight on I/O threads (the default; `SYNCBRIDGE_IO_THREADS=0` for the former).
            let jobs = snapshot.executors.flatMap { $0.threads.compactMap(\.job) + ($0.statementsInFlight ?? []) }
            let sleeping = jobs.contains { $0.detail == "SELECT pg_sleep(0.02)" }
            guard let pool = snapshot.pools.first(where: { $0.name == name }),
                pool.leases.count == 8, pool.waiters.count >= 40, sleeping,
                let oldest = pool.leases.first, oldest.heldForSeconds >= 2,
                pool.leases.dropFirst().allSatisfy({ $0.heldForSeconds < oldest.heldForSeconds / 2 })
            else { return false }
            seen.withLock { $0 = snapshot }
            return true
        }
        let snapshot = try #require(seen.value)
        let pool = try #require(snapshot.pools.first { $0.name == name })
        #expect(pool.maximumConnections == 8)
        #expect(pool.lifecycle == "running")
        #expect(pool.circuit == nil)

        // The held lease is the oldest, named by its call site; the others are the workers'.
        let held = try #require(pool.leases.first)
        #expect(held.callSite == "\(Self.file):\(holdLine)")
        #expect(held.kind == "exclusive")
        #expect(held.statements == nil)
        #expect(pool.leases.dropFirst().allSatisfy { $0.callSite == "\(Self.file):\(workLine)" })
        // A worker's lease lasts one 20 ms statement; the held one, all of the workers' time.
        #expect(pool.leases.dropFirst().allSatisfy { $0.heldForSeconds < held.heldForSeconds / 2 })
        #expect(pool.leases.map(\.heldForSeconds) == pool.leases.map(\.heldForSeconds).sorted(by: >))
        #expect(Set(pool.leases.map(\.connection)).count == 8)

        // The waiters: the workers' call site, longest wait first, at most 63 - 7 of them.
        #expect(pool.waiters.count <= 56)
        #expect(pool.waiters.allSatisfy { $0.callSite == "\(Self.file):\(workLine)" && $0.kind == "exclusive" })
        #expect(pool.waiters.map(\.waitingForSeconds) == pool.waiters.map(\.waitingForSeconds).sorted(by: >))

        // The statements on the connections' threads (or in flight on I/O threads): the SQL text
        // and where it was issued.
        let running = snapshot.executors.flatMap { $0.threads.compactMap(\.job) + ($0.statementsInFlight ?? []) }
            .filter { $0.detail == "SELECT pg_sleep(0.02)" }
        #expect(!running.isEmpty)
        #expect(
            running.allSatisfy {
                ["closure", "statement"].contains($0.kind) && $0.callSite == "\(Self.file):\(workLine)"
            }
        )

        // Valid JSON, which decodes back to the same value.
        let json = snapshot.jsonString()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(Set(object.keys).isSuperset(of: ["takenAt", "processID", "pools", "executors", "watchdogs"]))
        let decoded = try SyncBridgeSnapshot(json: json)
        #expect(decoded.takenAt == snapshot.takenAt)
        #expect(decoded.pools == snapshot.pools)
        #expect(decoded.executors == snapshot.executors)
        #expect(decoded.watchdogs == snapshot.watchdogs)
        #expect(decoded == snapshot)
        #expect(try SyncBridgeSnapshot(json: snapshot.jsonString(prettyPrinted: false)) == snapshot)
        // No connection string; another test's pool may show "password authentication failed".
        #expect(!json.contains("password="))

        // Once the work ends, nothing is leased and nobody waits.
        stop.withLock { $0 = true }
        release.open()
        try await holder.value
        for worker in workers { try await worker.value }
        let after = try #require(SyncBridgeSnapshot.take().pools.first { $0.name == name })
        #expect(after.leases.isEmpty)
        #expect(after.waiters.isEmpty)
        #expect(after.idleConnections == 8)
        await client.shutdown()
        let shutDown = SyncBridgeSnapshot.take().pools.first { $0.name == name }
        #expect(shutDown == nil || shutDown?.lifecycle == "shutDown")
    }

    @Test("SIGUSR1 dumps the snapshot to a JSON file; dump() sends it to the log as one line of JSON")
    func dumpOnSignal() async throws {
        let name = uniqueTable("dumped")
        let (client, release, holder, holdLine) = try await poolWithHeldLease(name)
        let handler = InMemoryLogHandler()
        let logger = Logger(label: "dumper") { _ in handler }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(name).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }

        let dumper = SnapshotDumper(destination: .file(path), logger: logger)
        let running = Task { try await dumper.run() }
        // The signal is trapped once the dumper says it is armed (before, SIGUSR1 ends the process).
        try await waitUntil(30) { handler.entries.contains { "\($0.message)".hasPrefix("armed") } }
        kill(getpid(), SIGUSR1)
        try await waitUntil(30) { FileManager.default.fileExists(atPath: path) }
        let dumped = try SyncBridgeSnapshot(json: try String(contentsOfFile: path, encoding: .utf8))
        #expect(dumped.processID == getpid())
        let pool = try #require(dumped.pools.first { $0.name == name })
        #expect(pool.leases.map(\.callSite) == ["\(Self.file):\(holdLine)"])
        running.cancel()
        try await running.value

        let logged = InMemoryLogHandler()
        let toLog = SnapshotDumper(destination: .log(Logger(label: "snapshots") { _ in logged }))
        await toLog.dump()
        let entry = try #require(logged.entries.first)
        #expect(entry.level == .notice)
        let line = try #require(entry.metadata["snapshot"].map { "\($0)" })
        #expect(!line.contains("\n"))
        let fromLog = try SyncBridgeSnapshot(json: line)
        #expect(fromLog.pools.first { $0.name == name }?.leases.map(\.callSite) == ["\(Self.file):\(holdLine)"])

        release.open()
        try await holder.value
        await client.shutdown()
    }
}
