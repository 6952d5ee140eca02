import CLibPQ
import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTemporaryServers
import Testing

/// Connections served by shared I/O threads (`SQLIOThreads`): single statements run with libpq's
/// non-blocking API on a thread that serves many connections; everything else keeps the
/// connection's own thread, in order.
@Suite("PostgreSQL on I/O threads")
struct PostgresIOThreadTests {
    /// Two threads for the suite's clients, as a service would have one per core.
    static let threads = SQLIOThreads(count: 2, name: "sb-io-test")

    /// How many tasks the load tests start: a fifth under ThreadSanitizer, where the whole suite
    /// shares two slowed-down cores and the same paths run with fewer statements.
    static func tasks(_ count: Int) -> Int { slowdown > 1 ? count / 5 : count }

    func makeClient(
        _ server: TemporaryPostgres,
        application: String,
        threads: SQLIOThreads = Self.threads,
        connections: Int
    ) -> PostgresClient {
        var configuration = ConnectionPoolConfiguration()
        configuration.maximumConnections = connections
        configuration.acquireTimeout = .seconds(60)
        return PostgresClient(
            connectionString: server.connectionString + " application_name=\(application)",
            configuration: configuration,
            ioThreads: threads,
            name: application
        )
    }

    func connect(_ server: TemporaryPostgres, threads: SQLIOThreads = Self.threads) async throws -> PostgresConnection {
        try await PostgresConnection.connect(
            configuration: PostgresConfiguration(connectionString: server.connectionString),
            ioThreads: threads
        )
    }

    @Test(
        "a result of more than 16 values or 32 KiB is left for its caller to decode, not the I/O thread; a smaller one is decoded at once; both read the same rows"
    )
    func largeResultsAreDecodedByTheirCaller() async throws {
        let server = try await TemporaryPostgres.shared()
        let connection = try await connect(server)
        let cases: [(sql: String, deferred: Bool)] = [
            ("SELECT 1, 'one'", false),
            ("SELECT g, g::text FROM generate_series(1, 8) g", false),  // 16 values
            ("SELECT g, g::text FROM generate_series(1, 9) g", true),  // 18 values
            ("SELECT repeat('x', 30000)", false),
            ("SELECT repeat('x', 40000)", true),
            ("SELECT g, NULL::text FROM generate_series(1, 1000) g", true),
        ]
        for (sql, deferred) in cases {
            let outcome = try await connection.withRawConnection { pg -> SQLOutcome? in
                PQexec(pg, sql).flatMap(PostgresSession.deferredOutcome(of:))
            }
            #expect((outcome?.deferredRows != nil) == deferred, "\(sql)")
            // Left undecoded until the caller resolves it; then the rows the connection reads.
            #expect(outcome?.rows.isEmpty ?? true)
            let expected = try await connection.query(SQLQuery(unsafeSQL: sql)).map(\.values)
            if let outcome {
                #expect(outcome.resolved().rows.map(\.values) == expected, "\(sql)")
                #expect(outcome.rowsAffected == expected.count)
            }
        }
        // Through the I/O thread: the 1,000 rows arrive whole, in order.
        let rows = try await connection.query("SELECT g, g::text FROM generate_series(1, 1000) g")
        #expect(try rows.map { try $0.decode(Int.self, at: 0) } == Array(1...1000))
        #expect(try rows.map { try $0.decode(String.self, at: 1) } == (1...1000).map(String.init))
        await connection.close()
    }

    @Test(
        "2,000 statements from 200 tasks on 16 connections: each task gets its own results, each row is inserted once"
    )
    func manyTasks() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-io-many", connections: 16)
        let table = uniqueTable("io_many")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (task int, step int, PRIMARY KEY (task, step))")
        let tasks = Self.tasks(200)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    for step in 0..<10 {
                        let echoed = try #require(
                            try await client.query("SELECT \(task)::int * 1000 + \(step)::int").first
                        ).decode(Int.self, at: 0)
                        #expect(echoed == task * 1000 + step)
                        let inserted = try await client.execute(
                            "INSERT INTO \(unsafeSQL: table) VALUES (\(task), \(step))"
                        )
                        #expect(inserted == 1)
                    }
                }
            }
            try await group.waitForAll()
        }
        let counts = try #require(
            try await client.query("SELECT count(*), count(DISTINCT (task, step)) FROM \(unsafeSQL: table)").first
        )
        #expect(try counts.decode((Int, Int).self) == (tasks * 10, tasks * 10))
        try await client.execute("DROP TABLE \(unsafeSQL: table)")
        await client.shutdown()
    }

    @Test(
        "a transaction's BEGIN waits for its first statement and reaches the server with it: whatever comes first — a statement, withRawConnection, a savepoint, COMMIT — runs inside the transaction"
    )
    func transactionStartTravelsWithFirstStatement() async throws {
        let server = try await TemporaryPostgres.shared()
        let connection = try await connect(server)
        let table = "tx_start_\(UInt32.random(in: 0...UInt32.max))"
        try await connection.execute(SQLQuery(unsafeSQL: "CREATE TABLE \(table) (id int PRIMARY KEY)"))
        func ids() async throws -> [Int] {
            try await connection.query(SQLQuery(unsafeSQL: "SELECT id FROM \(table) ORDER BY id")).map {
                try $0.decode(Int.self, at: 0)
            }
        }
        struct Undo: Error {}

        // A statement first: rolled back with the transaction.
        await #expect(throws: Undo.self) {
            try await connection.withTransaction { connection in
                try await connection.execute(SQLQuery(unsafeSQL: "INSERT INTO \(table) VALUES (1)"))
                throw Undo()
            }
        }
        // Legacy code first: the transaction has begun on the server before it runs.
        await #expect(throws: Undo.self) {
            try await connection.withTransaction { connection in
                try await connection.withRawConnection { pg in
                    let result = PQexec(pg, "INSERT INTO \(table) VALUES (2)")
                    defer { PQclear(result) }
                    precondition(PQresultStatus(result) == PGRES_COMMAND_OK)
                }
                throw Undo()
            }
        }
        // A first statement that cannot be encoded (a NUL in text) sends nothing: the next one
        // still carries the start.
        var encodingError: (any Error)?
        await #expect(throws: Undo.self) {
            try await connection.withTransaction { connection in
                do {
                    try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\("3\u{0}")::int)")
                } catch {
                    encodingError = error
                }
                try await connection.execute(SQLQuery(unsafeSQL: "INSERT INTO \(table) VALUES (3)"))
                throw Undo()
            }
        }
        #expect(encodingError is SQLEncodingError, "\(String(describing: encodingError))")
        // A savepoint first (a nested transaction), then a statement: all rolled back.
        await #expect(throws: Undo.self) {
            try await connection.withTransaction { connection in
                try await connection.withTransaction { connection in
                    try await connection.execute(SQLQuery(unsafeSQL: "INSERT INTO \(table) VALUES (4)"))
                }
                throw Undo()
            }
        }
        // Two statements at once: the one that carries the start goes alone; the other follows
        // it, inside the transaction.
        await #expect(throws: Undo.self) {
            try await connection.withTransaction { connection in
                async let seven = connection.execute(SQLQuery(unsafeSQL: "INSERT INTO \(table) VALUES (7)"))
                async let eight = connection.execute(SQLQuery(unsafeSQL: "INSERT INTO \(table) VALUES (8)"))
                _ = try await (seven, eight)
                throw Undo()
            }
        }
        #expect(try await ids() == [])
        // Nothing in the body: BEGIN and COMMIT together; then a body that throws before any
        // statement: nothing reached the server, nothing to roll back.
        try await connection.withTransaction { _ in }
        await #expect(throws: Undo.self) { try await connection.withTransaction { _ in throw Undo() } }
        // Committed: every statement of the body took effect, and the connection is outside any
        // transaction afterwards (a rollback of its own now undoes nothing).
        try await connection.withTransaction { connection in
            try await connection.execute(SQLQuery(unsafeSQL: "INSERT INTO \(table) VALUES (5)"))
            try await connection.execute(SQLQuery(unsafeSQL: "INSERT INTO \(table) VALUES (6)"))
        }
        try await connection.execute("ROLLBACK")
        #expect(try await ids() == [5, 6])
        try await connection.execute(SQLQuery(unsafeSQL: "DROP TABLE \(table)"))
        await connection.close()
    }

    @Test(
        "a transaction whose BEGIN fails with its first statement runs none of its statements: each fails with SQLTransactionNotStarted, withTransaction throws the server's error, and the connection goes on"
    )
    func failedTransactionStart() async throws {
        let server = try await TemporaryPostgres.shared()
        let connection = try await connect(server)
        let table = "tx_refused_\(UInt32.random(in: 0...UInt32.max))"
        try await connection.execute(SQLQuery(unsafeSQL: "CREATE TABLE \(table) (id int PRIMARY KEY)"))
        let insert = SQLQuery(unsafeSQL: "INSERT INTO \(table) VALUES (1)")
        var firstError: (any Error)?
        var secondError: (any Error)?
        let error = await #expect(throws: PostgresError.self) {
            try await connection.withTransactionUntraced(starting: ["BEGIN ISOLATION LEVEL NONSENSE"]) { connection in
                // Swallowed on purpose: the body goes on as code that ignores an error would.
                do { try await connection.execute(insert) } catch { firstError = error }
                do { try await connection.execute(insert) } catch { secondError = error }
            }
        }
        // Two statements at once: neither runs.
        await #expect(throws: PostgresError.self) {
            try await connection.withTransactionUntraced(starting: ["BEGIN ISOLATION LEVEL NONSENSE"]) { connection in
                async let one = connection.execute(SQLQuery(unsafeSQL: "INSERT INTO \(table) VALUES (2)"))
                async let two = connection.execute(SQLQuery(unsafeSQL: "INSERT INTO \(table) VALUES (3)"))
                var errors: [any Error] = []
                do { _ = try await one } catch { errors.append(error) }
                do { _ = try await two } catch { errors.append(error) }
                #expect(errors.count == 2 && errors.allSatisfy { $0 is SQLTransactionNotStarted }, "\(errors)")
                if let first = errors.first { throw first }
            }
        }
        #expect(error?.sqlState == "42601", "\(String(describing: error))")
        let first = try #require(firstError as? SQLTransactionNotStarted)
        #expect((first.underlying as? PostgresError)?.sqlState == "42601")
        #expect(secondError is SQLTransactionNotStarted)
        // Neither insert ran, in a transaction or outside one.
        #expect(
            try await connection.query(SQLQuery(unsafeSQL: "SELECT count(*) FROM \(table)"))[0].decode(Int.self, at: 0)
                == 0
        )
        // The statement prepared in the refused unit is prepared again when next used; the next
        // transaction commits.
        try await connection.withTransaction { connection in try await connection.execute(insert) }
        #expect(
            try await connection.query(SQLQuery(unsafeSQL: "SELECT count(*) FROM \(table)"))[0].decode(Int.self, at: 0)
                == 1
        )
        try await connection.execute(SQLQuery(unsafeSQL: "DROP TABLE \(table)"))
        await connection.close()
    }

    @Test("pipelined statements on one connection: a failing one in the middle fails alone, typed, to its own caller")
    func failureInAPipeline() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-io-failure", connections: 1)
        let results = try await withThrowingTaskGroup(of: (Int, Result<Int, PostgresError>).self) { group in
            for index in 0..<300 {
                group.addTask {
                    do {
                        // Every tenth divides by zero.
                        let divisor = index.isMultiple(of: 10) ? 0 : 1
                        let row = try #require(try await client.query("SELECT \(index)::int / \(divisor)::int").first)
                        return (index, .success(try row.decode(Int.self, at: 0)))
                    } catch let error as PostgresError {
                        return (index, .failure(error))
                    }
                }
            }
            return try await group.reduce(into: [Int: Result<Int, PostgresError>]()) { $0[$1.0] = $1.1 }
        }
        #expect(results.count == 300)
        for (index, result) in results {
            switch result {
            case .success(let value):
                #expect(!index.isMultiple(of: 10) && value == index)
            case .failure(let error):
                #expect(index.isMultiple(of: 10) && error.sqlState == "22012", "\(index): \(error)")
            }
        }
        await client.shutdown()
    }

    @Test(
        "10,000 statements from 200 tasks on 8 connections, a tenth of the tasks cancelled midway: the others' rows all there, each once; the cancelled ones' rows a prefix of theirs"
    )
    func cancellingSomeTasks() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-io-cancel", connections: 8)
        let table = uniqueTable("io_cancel")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (task int, step int, PRIMARY KEY (task, step))")
        let started = Locked(0)
        let taskCount = Self.tasks(200)
        let tasks = (0..<taskCount).map { task in
            Task {
                for step in 0..<50 {
                    try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(task), \(step))")
                    if step == 10 { started.withLock { $0 += 1 } }
                }
            }
        }
        // Cancel every twentieth task once most tasks are well under way.
        try await waitUntil { started.current >= taskCount / 2 }
        for task in stride(from: 0, to: taskCount, by: 20) { tasks[task].cancel() }
        for (index, task) in tasks.enumerated() {
            if index.isMultiple(of: 20) {
                _ = await task.result
            } else {
                try await task.value
            }
        }
        let rows = try await client.query("SELECT task, count(*), max(step) FROM \(unsafeSQL: table) GROUP BY task")
        var counted: [Int: (count: Int, last: Int)] = [:]
        for row in rows {
            let (task, count, last) = try row.decode((Int, Int, Int).self)
            counted[task] = (count, last)
        }
        for task in 0..<taskCount {
            let (count, last) = counted[task] ?? (0, -1)
            if task.isMultiple(of: 20) {
                // Steps 0 … last, each once: the statements after the cancel never ran.
                #expect(count == last + 1 && count <= 50, "task \(task): \(count) rows up to step \(last)")
            } else {
                #expect(count == 50 && last == 49, "task \(task): \(count) rows")
            }
        }
        try await client.execute("DROP TABLE \(unsafeSQL: table)")
        await client.shutdown()
    }

    @Test("a connection whose server process is killed while 200 tasks keep 32 connections busy fails alone")
    func killedBackendFailsAlone() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = makeClient(server, application: "sb-io-kill", connections: 32)
        let observer = try await connectToTestServer()
        let failures = Locked<[PostgresError]>([])
        let succeeded = Locked(0)
        let attempted = Locked(0)
        let victim = Locked<Int32?>(nil)
        let killed = Locked(false)
        let tasks = Self.tasks(200)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    // Busy until the kill, whenever it comes, and three statements more: the
                    // killed connection is found while the others work.
                    var step = 0
                    var afterKill = 0
                    while afterKill < 3 {
                        if killed.current { afterKill += 1 }
                        do {
                            let row = try #require(
                                try await client.query("SELECT pg_backend_pid(), \(task * 10_000 + step)::int").first
                            )
                            let (pid, echoed) = try row.decode((Int32, Int).self)
                            #expect(echoed == task * 10_000 + step)
                            victim.withLock { $0 = $0 ?? pid }
                            succeeded.withLock { $0 += 1 }
                        } catch let error as PostgresError {
                            failures.withLock { $0.append(error) }
                        }
                        step += 1
                    }
                    attempted.withLock { $0 += step }
                }
            }
            group.addTask {
                try await waitUntil { victim.current != nil && succeeded.current >= tasks * 2 }
                let pid = try #require(victim.current)
                _ = try await observer.query("SELECT pg_terminate_backend(\(pid))")
                killed.withLock { $0 = true }
            }
            try await group.waitForAll()
        }
        // Only statements that were on the killed connection fail, with the server's
        // termination (57P01) or the lost connection (08006) (none when it was idle then: its I/O
        // thread found it over, and the pool leased it no more); every other one ran.
        let failed = failures.current
        #expect(failed.allSatisfy { ["57P01", "08006"].contains($0.sqlState) }, "\(failed)")
        #expect(failed.count <= 64, "\(failed.count) statements failed")
        #expect(succeeded.current + failed.count == attempted.current)
        #expect(try await client.query("SELECT 1").count == 1)
        await observer.close()
        await client.shutdown()
    }

    @Test(
        "a connection whose C client closed its socket (its backend was terminated) never touches the socket that takes its number next: the new connection's statement ends while the old one closes"
    )
    func reusedSocketNumber() async throws {
        let server = try await TemporaryPostgres.shared()
        // One thread: both connections' sockets are watched by the same epoll set.
        let threads = SQLIOThreads(count: 1, name: "sb-io-reuse")
        let observer = try await connect(server)
        var reused = false
        // The next socket takes the lowest free number, which a parallel test may take first:
        // tried until the number is reused.
        for _ in 0..<10 where !reused {
            let victim = try await connect(server, threads: threads)
            let pid = try #require(try await victim.query("SELECT pg_backend_pid()").first).decode(Int32.self, at: 0)
            let number = try await victim.withRawConnection { connection in PQsocket(connection) }
            _ = try await observer.query("SELECT pg_terminate_backend(\(pid))")
            // libpq finds the connection gone and closes its socket.
            let lost = try await #require(throws: PostgresError.self) { try await victim.query("SELECT 1") }
            #expect(["57P01", "08006"].contains(lost.sqlState), "\(lost)")
            let next = try await connect(server, threads: threads)
            let (nextNumber, nextPID) = try await next.withRawConnection { connection in
                (PQsocket(connection), PQbackendPID(connection))
            }
            reused = nextNumber == number
            // The new connection waits for its answer on the I/O thread (for a lock the observer
            // holds) while the old one closes.
            let key = Int.random(in: 1...1_000_000_000)
            _ = try await observer.query("SELECT pg_advisory_lock(\(key))")
            let slow = Task { try await next.query("SELECT 42 FROM (SELECT pg_advisory_lock(\(key))) AS locked") }
            try await waitUntil {
                try await observer.query(
                    "SELECT count(*)::int FROM pg_stat_activity WHERE pid = \(nextPID) AND wait_event_type = 'Lock'"
                ).first?.decode(Int.self, at: 0) == 1
            }
            await victim.close()
            _ = try await observer.query("SELECT pg_advisory_unlock(\(key))")
            // (Cancelled at the deadline, the statement ends within the grace period.)
            let row = try await withDeadline(10) {
                try await withTaskCancellationHandler {
                    try await slow.value
                } onCancel: {
                    slow.cancel()
                }
            }.first
            #expect(try row?.decode(Int.self, at: 0) == 42)
            #expect(try await next.query("SELECT 7").first?.decode(Int.self, at: 0) == 7)
            await next.close()
        }
        #expect(reused, "no new connection got the closed socket's number")
        await observer.close()
        threads.shutdown()
    }

    @Test("statements, transactions, streams and withRawConnection interleave on one connection in submission order")
    func mixedWork() async throws {
        let server = try await TemporaryPostgres.shared()
        let connection = try await connect(server)
        let table = uniqueTable("io_mixed")
        try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id int PRIMARY KEY)")
        for id in 0..<20 {
            if id.isMultiple(of: 3) {
                try await connection.withTransaction { connection in
                    try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(id))")
                }
            } else if id.isMultiple(of: 5) {
                let count = try await connection.withRawConnection { handle in
                    PQntuples(PQexec(handle, "SELECT 1"))
                }
                #expect(count == 1)
                try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(id))")
            } else {
                try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(id))")
            }
            var streamed = 0
            for try await _ in try await connection.stream("SELECT id FROM \(unsafeSQL: table)") { streamed += 1 }
            #expect(streamed == id + 1)
        }
        let ids = try await connection.query("SELECT id FROM \(unsafeSQL: table) ORDER BY id").map {
            try $0.decode(Int.self, at: 0)
        }
        #expect(ids == Array(0..<20))
        try await connection.execute("DROP TABLE \(unsafeSQL: table)")
        await connection.close()
    }

    @Test(
        "right after a stream, a cached statement and a pipeline return every row (libpq leaves single-row mode on for the next pipelined statement)"
    )
    func statementsAfterAStream() async throws {
        let server = try await TemporaryPostgres.shared()
        let connection = try await connect(server)
        let series: SQLQuery = "SELECT generate_series(1, 3)"
        func values(_ rows: [SQLRow]) throws -> [Int] { try rows.map { try $0.decode(Int.self, at: 0) } }
        #expect(try values(try await connection.query(series)) == [1, 2, 3])
        for round in 0..<3 {
            var streamed = 0
            for try await _ in try await connection.stream("SELECT generate_series(1, 50)", batchSize: 16) {
                streamed += 1
            }
            #expect(streamed == 50)
            // The statement is cached (prepared by name): the I/O thread sends it in pipeline mode.
            let rows = try await connection.query(series)
            #expect(try values(rows) == [1, 2, 3], "round \(round)")
            for try await _ in try await connection.stream("SELECT generate_series(1, 5)") {}
            let piped = try await connection.pipeline([series, "SELECT \(round)::int"])
            #expect(try values(try piped[0].get().rows) == [1, 2, 3], "round \(round)")
            #expect(try values(try piped[1].get().rows) == [round])
        }
        await connection.close()
    }

    @Test(
        "a connection's own thread exits while only its I/O thread serves it, and starts again for blocking work"
    )
    func ownThreadRetiresWhileIdle() async throws {
        let server = try await TemporaryPostgres.shared()
        var connections: [PostgresConnection] = []
        var names: [ThreadIdentity] = []
        for _ in 0..<4 {
            let connection = try await connect(server)
            connections.append(connection)
            names.append(try await connection.executor.run { ThreadIdentity.current })
        }
        let (opened, threads) = (connections, names)
        // Statements only: the I/O thread serves them, and the connections' own threads retire.
        for round in 0..<50 {
            for connection in connections {
                let value = try await connection.query("SELECT \(round)::int").first?.decode(Int.self, at: 0)
                #expect(value == round)
            }
        }
        try await waitUntil(Double(SQLIOThreads.connectionThreadIdleLifetime.components.seconds) + 10) {
            opened.allSatisfy { $0.executor.statistics.threadCount == 0 }
                && threads.allSatisfy { access("/proc/self/task/\($0.tid)", F_OK) != 0 }
        }
        // Blocking work starts each thread again, under the same name, and the statements queued
        // around it keep their order.
        for (connection, old) in zip(connections, names) {
            async let before = connection.query("SELECT 1")
            let thread = try await connection.withRawConnection { handle in
                (ThreadIdentity.current, PQntuples(PQexec(handle, "SELECT 2")))
            }
            var streamed: [Int] = []
            for try await row in try await connection.stream("SELECT generate_series(1, 3)") {
                streamed.append(try row.decode(Int.self, at: 0))
            }
            #expect(try await before.count == 1)
            #expect(thread.0.name == old.name && thread.0.tid != old.tid)
            #expect(thread.1 == 1)
            #expect(streamed == [1, 2, 3])
        }
        for connection in connections { await connection.close() }
    }

    @Test(
        "a failing statement gets its typed error; a statement that cannot be prepared is not kept; the connection goes on"
    )
    func errors() async throws {
        let server = try await TemporaryPostgres.shared()
        let connection = try await connect(server)
        let division = try await #require(throws: PostgresError.self) {
            try await connection.query("SELECT 1 / \(0)")
        }
        #expect(division.sqlState == "22012")
        for _ in 0..<2 {
            let syntax = try await #require(throws: PostgresError.self) {
                try await connection.query("SELEC 1")
            }
            #expect(syntax.sqlState == "42601")
        }
        #expect(try await connection.query("SELECT 41 + \(1)").first?.decode(Int.self, at: 0) == 42)
        await connection.close()
    }

    @Test("cancelling a running statement cancels it on the server; a timeout ends one; the connection stays usable")
    func cancellationAndTimeout() async throws {
        let server = try await TemporaryPostgres.shared()
        // The connection stays usable only if the server itself stopped each statement, which it
        // does within the grace period: a long one, since beside the whole suite a cancel request
        // (a backend forked for it) has taken longer than the default 2 s.
        let connection = try await PostgresConnection.connect(
            configuration: PostgresConfiguration(connectionString: server.connectionString),
            ioThreads: Self.threads,
            cancellationGracePeriod: .seconds(10 * slowdown)
        )
        let pid = try #require(try await connection.query("SELECT pg_backend_pid()").first).decode(Int32.self, at: 0)
        let observer = try await connectToTestServer()
        // An hour's sleep: whatever the machine's load, it ends only if it is cancelled.
        let task = Task { try await connection.query("SELECT pg_sleep(3600)") }
        try await waitUntil {
            try await observer.query(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = \(pid) AND state = 'active'"
            ).first?.decode(Int.self, at: 0) == 1
        }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        let timeout = try await #require(throws: PostgresError.self) {
            try await connection.query("SELECT pg_sleep(3600)", timeout: .milliseconds(200))
        }
        #expect(timeout.isStatementTimeout)
        #expect(try await connection.query("SELECT 7").first?.decode(Int.self, at: 0) == 7)
        #expect(connection.isUsable, "a statement was abandoned rather than cancelled on the server")
        await observer.close()
        await connection.close()
    }

    @Test("legacy code blocking 300 ms in withRawConnection never holds up the other connections of its I/O thread")
    func rawConnectionDoesNotBlockTheThread() async throws {
        let server = try await TemporaryPostgres.shared()
        let threads = SQLIOThreads(count: 1, name: "sb-io-one")
        defer { threads.shutdown() }
        let blocked = try await PostgresConnection.connect(
            configuration: PostgresConfiguration(connectionString: server.connectionString),
            ioThreads: threads
        )
        let others = try await PostgresConnection.connect(
            configuration: PostgresConfiguration(connectionString: server.connectionString),
            ioThreads: threads
        )
        // The legacy code blocks in 300 ms calls until the other connection has completed 20
        // statements (at most 30 s, ten times that under ThreadSanitizer): with the I/O thread
        // held up, it would never get there.
        let completed = Locked(0)
        let inside = Gate()
        let completedWhileBlocked = Task {
            try await blocked.withRawConnection { handle in
                inside.open()
                let deadline = ContinuousClock.now + .seconds(30 * slowdown)
                repeat {
                    PQclear(PQexec(handle, "SELECT pg_sleep(0.3)"))
                } while completed.current < 20 && ContinuousClock.now < deadline
                return completed.current
            }
        }
        try await inside.wait()
        while completed.current < 20 {
            _ = try await others.query("SELECT 1")
            completed.withLock { $0 += 1 }
        }
        let seen = try await completedWhileBlocked.value
        #expect(seen >= 20, "only \(seen) statements ran beside the blocking calls")
        await blocked.close()
        await others.close()
    }
}

/// Tasks that prefer an I/O thread as their executor (`SQLIOThreads.taskExecutors`).
@Suite("PostgreSQL: tasks on the I/O threads")
struct PostgresTasksOnIOThreadsTests {
    /// Runs `body` with a client of `connections` connections, all open, served by two I/O
    /// threads named `<name>-1` and `<name>-2`; shuts both down afterwards.
    func withClient(
        threads name: String,
        connections: Int,
        _ body: (PostgresClient, SQLIOThreads) async throws -> Void
    ) async throws {
        let server = try await TemporaryPostgres.shared()
        let threads = SQLIOThreads(count: 2, name: name)
        var configuration = ConnectionPoolConfiguration()
        configuration.minimumConnections = connections
        configuration.maximumConnections = connections
        configuration.acquireTimeout = .seconds(60)
        let client = PostgresClient(
            connectionString: server.connectionString + " application_name=\(name)",
            configuration: configuration,
            ioThreads: threads,
            name: name
        )
        let run = Task { try await client.run() }
        defer { threads.shutdown() }
        do {
            try await waitUntil { client.pool.statistics.idle == connections }
            try await body(client, threads)
        } catch {
            run.cancel()
            await client.shutdown()
            throw error
        }
        run.cancel()
        _ = await run.result
        await client.shutdown()
    }

    @Test("A task on an I/O thread runs and resumes there, and gets that thread's connection from the pool")
    func affinity() async throws {
        try await withClient(threads: "sb-io-aff", connections: 2) { client, threads in
            // One task at a time: both connections are idle at every lease, and each thread's task
            // must get the connection its thread serves, every time.
            var backends: [Set<Int>] = []
            for (index, executor) in threads.taskExecutors.enumerated() {
                let name = "sb-io-aff-\(index + 1)"
                let seen = try await Task(executorPreference: executor) {
                    var seen = Set<Int>()
                    for step in 0..<20 {
                        #expect(ThreadIdentity.current.name == name)
                        let row = try #require(try await client.query("SELECT pg_backend_pid(), \(step)::int").first)
                        #expect(try row.decode(Int.self, at: 1) == step)
                        seen.insert(try row.decode(Int.self, at: 0))
                        #expect(ThreadIdentity.current.name == name, "resumed off its I/O thread at step \(step)")
                    }
                    return seen
                }.value
                backends.append(seen)
            }
            #expect(backends[0].count == 1 && backends[1].count == 1, "backends per thread: \(backends)")
            #expect(backends[0] != backends[1], "both threads' tasks got the same connection: \(backends)")
        }
    }

    @Test("400 statements from 16 tasks spread over two I/O threads: every result its own, every task on its thread")
    func manyTasks() async throws {
        try await withClient(threads: "sb-io-many", connections: 4) { client, threads in
            let executors = threads.taskExecutors
            let total = try await withThrowingTaskGroup(of: Int.self) { group in
                for task in 0..<16 {
                    let name = "sb-io-many-\(task % 2 + 1)"
                    group.addTask(executorPreference: executors[task % 2]) {
                        var sum = 0
                        for step in 0..<25 {
                            let row = try #require(
                                try await client.query("SELECT \(task)::int * 1000 + \(step)::int").first
                            )
                            let value = try row.decode(Int.self, at: 0)
                            #expect(value == task * 1000 + step)
                            #expect(ThreadIdentity.current.name == name)
                            sum += value
                        }
                        return sum
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(total == (0..<16).reduce(0) { $0 + 25 * $1 * 1000 + (0..<25).reduce(0, +) })
        }
    }
}
