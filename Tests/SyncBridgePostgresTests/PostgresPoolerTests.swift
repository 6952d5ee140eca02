import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

/// Behind a real PgBouncer in transaction mode (Debian's 1.18: no protocol-level prepared
/// statements), which hands each transaction — and each statement outside one — to whichever of
/// its server connections is free.
@Suite("PostgreSQL behind PgBouncer in transaction mode")
struct PostgresPoolerTests {
    /// PgBouncer keeps 4 server connections; the clients' pools are larger.
    static let serverConnections = 4

    func startBouncer() async throws -> (TemporaryPostgres, TemporaryPgBouncer) {
        let server = try await TemporaryPostgres.shared()
        let bouncer = try await TemporaryPgBouncer.start(
            in: server,
            poolMode: .transaction,
            poolSize: Self.serverConnections
        )
        return (server, bouncer)
    }

    func makeClient(_ configuration: PostgresConfiguration, connections: Int = 16) -> PostgresClient {
        var pool = ConnectionPoolConfiguration()
        pool.maximumConnections = connections
        pool.acquireTimeout = .seconds(60)
        return PostgresClient(configuration: configuration, poolConfiguration: pool, name: uniqueTable("pooled"))
    }

    /// A statement answered something else than what was asked (another statement's result).
    struct WrongResult: Error, CustomStringConvertible {
        let description: String
    }

    /// One task's share of the mixed workload: lookups, inserts, transactions and streams, in turn.
    /// Runs `steps` steps, or until `stop` is set. Returns the rows it inserted; throws
    /// ``WrongResult`` when an answer is not the statement's.
    static func work(
        on client: PostgresClient,
        table: String,
        task: Int,
        steps: Int = .max,
        until stop: Shared<Bool>
    ) async throws -> Int {
        var inserted = 0
        var step = 0
        while step < steps, !stop.value {
            switch step % 4 {
            case 0:
                let rows = try await client.query("SELECT \(task)::int + \(step)::int")
                let sum = try rows.first?.decode(Int.self, at: 0)
                guard sum == task + step else {
                    throw WrongResult(
                        description: "SELECT \(task) + \(step) answered \(sum.map(String.init) ?? "no row")"
                    )
                }
            case 1:
                try await client.execute("INSERT INTO \(unsafeSQL: table) (task, step) VALUES (\(task), \(step))")
                inserted += 1
            case 2:
                let count = try await client.withTransaction { connection in
                    try await connection.execute(
                        "INSERT INTO \(unsafeSQL: table) (task, step) VALUES (\(task), \(step))"
                    )
                    return try await connection.query(
                        "SELECT count(*) FROM \(unsafeSQL: table) WHERE task = \(task)"
                    ).first?.decode(Int.self, at: 0)
                }
                inserted += 1
                guard count == inserted else {
                    throw WrongResult(description: "task \(task) counted \(count ?? -1) of its \(inserted) rows")
                }
            default:
                var seen = 0
                for try await row in try await client.stream("SELECT generate_series(1, \(50))", batchSize: 16) {
                    seen += 1
                    guard try row.decode(Int.self, at: 0) == seen else {
                        throw WrongResult(description: "a stream's row \(seen) was \(try row.decode(Int.self, at: 0))")
                    }
                }
                guard seen == 50 else { throw WrongResult(description: "a stream of 50 rows had \(seen)") }
            }
            step += 1
        }
        return inserted
    }

    @Test("pipelines through PgBouncer: 16 tasks × 200 statements, each result its own statement's, every row there")
    func pipelines() async throws {
        let (_, bouncer) = try await startBouncer()
        let client = makeClient(.behindTransactionPooler(bouncer.connectionString, statementTimeout: .seconds(30)))
        let table = uniqueTable("pooled_pipeline")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (task int NOT NULL, step int NOT NULL)")
        let wrong = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<16 {
                group.addTask {
                    var statements: [SQLQuery] = []
                    for step in 0..<100 {
                        statements.append("INSERT INTO \(unsafeSQL: table) VALUES (\(task), \(step))")
                        statements.append("SELECT \(task * 1000 + step)::int")
                    }
                    let results = try await client.pipeline(statements)
                    var wrong = 0
                    for (offset, result) in results.enumerated() where !offset.isMultiple(of: 2) {
                        if try result.get().rows.first?.decode(Int.self, at: 0) != task * 1000 + offset / 2 {
                            wrong += 1
                        }
                    }
                    return wrong
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(wrong == 0)
        let count = try await client.query("SELECT count(*) FROM \(unsafeSQL: table)").first?.decode(Int.self, at: 0)
        #expect(count == 16 * 100)
        try await client.execute("DROP TABLE \(unsafeSQL: table)")
        await client.shutdown()
        await bouncer.stop()
    }

    @Test(
        "64 tasks of mixed queries, inserts, transactions and streams, on 16 connections over PgBouncer's 4: no error, every row there"
    )
    func mixedWorkload() async throws {
        let (_, bouncer) = try await startBouncer()
        let client = makeClient(.behindTransactionPooler(bouncer.connectionString, statementTimeout: .seconds(30)))
        let table = uniqueTable("pooled_rows")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (task int NOT NULL, step int NOT NULL)")
        // A fixed amount of work, not a fixed time: under a loaded CI machine the test takes
        // longer but checks the same thing.
        let steps = 12
        let inserted = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<64 {
                group.addTask {
                    try await Self.work(on: client, table: table, task: task, steps: steps, until: Shared(false))
                }
            }
            return try await group.reduce(0, +)
        }
        let count = try await client.query("SELECT count(*) FROM \(unsafeSQL: table)").first?.decode(Int.self, at: 0)
        // Steps 1 and 2 of every 4 insert one row each.
        #expect(inserted == 64 * steps / 2)
        #expect(count == inserted)
        try await client.execute("DROP TABLE \(unsafeSQL: table)")
        await client.shutdown()
        await bouncer.stop()
    }

    @Test(
        "without the pooler mode, the same workload fails: a named prepared statement is missing on the next server connection, or is another client's statement"
    )
    func namedStatementsFailWithoutPoolerMode() async throws {
        let (_, bouncer) = try await startBouncer()
        let client = makeClient(PostgresConfiguration(connectionString: bouncer.connectionString))
        let table = uniqueTable("unpooled_rows")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (task int NOT NULL, step int NOT NULL)")
        let stop = Shared(false)
        let failure = try await withThrowingTaskGroup(of: (any Error)?.self, returning: (any Error)?.self) { group in
            for task in 0..<64 {
                group.addTask {
                    do {
                        _ = try await Self.work(on: client, table: table, task: task, until: stop)
                        return nil
                    } catch {
                        stop.withLock { $0 = true }
                        return error
                    }
                }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(10))
                stop.withLock { $0 = true }
                return nil
            }
            for try await case let error? in group {
                group.cancelAll()
                return error
            }
            return nil
        }
        let error = try #require(failure, "the workload ran 10 s through PgBouncer without an error")
        if let error = error as? PostgresError {
            // "prepared statement "sb_0" does not exist" (26000), "… already exists" (42P05), or
            // "bind message supplies 2 parameters, but prepared statement "sb_3" requires 1"
            // (08P01: that name is another client's statement on this server connection).
            #expect(error.message.contains("prepared statement"), "\(error)")
            #expect(["26000", "42P05", "08P01"].contains(error.sqlState), "\(error)")
        } else {
            // Worse: `sb_3` on that server connection is another client's statement, whose
            // result came back as this one's.
            #expect(error is WrongResult, "\(error)")
        }
        await client.shutdown()
        let cleaner = makeClient(.behindTransactionPooler(bouncer.connectionString))
        try await cleaner.execute("DROP TABLE \(unsafeSQL: table)")
        await cleaner.shutdown()
        await bouncer.stop()
    }

    @Test(
        "the default statement timeout is the client's: no session setting reaches another client through PgBouncer, and a statement past it is cancelled"
    )
    func noSessionSettingLeaks() async throws {
        let (_, bouncer) = try await startBouncer()
        // 3 s: the warm-up's 16 statements of 50 ms queue for PgBouncer's 4 server connections,
        // and the whole suite beside them once stretched that past 1 s.
        let timed = makeClient(.behindTransactionPooler(bouncer.connectionString, statementTimeout: .seconds(3)))
        let other = makeClient(.behindTransactionPooler(bouncer.connectionString))
        // Every one of PgBouncer's server connections has served the timed client.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask { _ = try await timed.query("SELECT pg_sleep(0.05)") }
            }
            try await group.waitForAll()
        }
        // A setting inside the timed client's transaction stays there.
        let (inside, release) = (Gate(), Gate())
        let holder = Task {
            try await timed.withTransaction { connection in
                try await connection.execute("SET LOCAL application_name TO 'inside-a-transaction'")
                inside.open()
                try await release.wait()
            }
        }
        try await inside.wait()
        for _ in 0..<20 {
            let rows = try await other.query(
                "SELECT current_setting('statement_timeout'), current_setting('application_name')"
            )
            let (timeout, application) = try #require(rows.first).decode((String, String).self)
            #expect(timeout == "0")
            #expect(application != "inside-a-transaction")
        }
        release.open()
        try await holder.value

        // The client's own deadline cancels a statement past the default, with the typed error.
        let started = ContinuousClock.now
        let error = try await #require(throws: PostgresError.self) { try await timed.query("SELECT pg_sleep(30)") }
        #expect(error.kind == .timedOut)
        #expect(ContinuousClock.now - started < .seconds(10 * slowdown))
        #expect(try await timed.query("SELECT 1").first?.decode(Int.self, at: 0) == 1)
        await timed.shutdown()
        await other.shutdown()
        await bouncer.stop()
    }

    @Test(
        "LISTEN goes to the direct connection string and hears what is sent through PgBouncer; without one, the stream ends at once"
    )
    func listenOnTheDirectConnection() async throws {
        let (server, bouncer) = try await startBouncer()
        let client = makeClient(
            .behindTransactionPooler(bouncer.connectionString, listenConnectionString: server.connectionString)
        )
        let channel = uniqueTable("pooled_channel")
        let notifications = await client.listen(on: channel)
        try await client.notify(channel: channel, payload: "through the pooler")
        let received = try await withDeadline(30) { () -> PostgresNotification? in
            for await notification in notifications { return notification }
            return nil
        }
        #expect(received?.payload == "through the pooler")
        await client.shutdown()

        let withoutDirect = makeClient(.behindTransactionPooler(bouncer.connectionString))
        let ended = try await withDeadline(30) {
            var count = 0
            for await _ in await withoutDirect.listen(on: channel) { count += 1 }
            return count
        }
        #expect(ended == 0)
        await withoutDirect.shutdown()
        await bouncer.stop()
    }
}
