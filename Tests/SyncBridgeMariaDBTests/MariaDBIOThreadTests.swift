import CMariaDB
import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgeSQL
import SyncBridgeTemporaryServers
import Testing

/// Connections served by shared I/O threads (`SQLIOThreads`): single statements run with
/// Connector/C's non-blocking calls on a thread that serves many connections; everything else
/// keeps the connection's own thread, in order.
@Suite("MariaDB on I/O threads")
struct MariaDBIOThreadTests {
    /// Two threads for the suite's clients, as a service would have one per core.
    static let threads = SQLIOThreads(count: 2, name: "sb-io-mdb")

    /// How many tasks the load tests start: a fifth under ThreadSanitizer, where the whole suite
    /// shares two slowed-down cores and the same paths run with fewer statements.
    static func tasks(_ count: Int) -> Int { slowdown > 1 ? count / 5 : count }

    func makeClient(
        _ configuration: MariaDBConfiguration,
        threads: SQLIOThreads = Self.threads,
        connections: Int
    ) -> MariaDBClient {
        var pool = ConnectionPoolConfiguration()
        pool.maximumConnections = connections
        pool.acquireTimeout = .seconds(60)
        return MariaDBClient(configuration: configuration, poolConfiguration: pool, ioThreads: threads)
    }

    func connect(
        _ configuration: MariaDBConfiguration,
        threads: SQLIOThreads = Self.threads,
        gracePeriod: Duration = .seconds(2)
    ) async throws -> MariaDBConnection {
        try await MariaDBConnection.connect(
            configuration: configuration,
            ioThreads: threads,
            cancellationGracePeriod: gracePeriod
        )
    }

    @Test(
        "2,000 statements from 200 tasks on 16 connections: each task gets its own results, each row is inserted once"
    )
    func manyTasks() async throws {
        let client = makeClient(try await testConfiguration(), connections: 16)
        let table = uniqueTable("io_many")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (task INT, step INT, PRIMARY KEY (task, step))")
        let tasks = Self.tasks(200)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    for step in 0..<10 {
                        let echoed = try #require(
                            try await client.query("SELECT \(task) * 1000 + \(step), REPEAT('x', \(step * 100))").first
                        )
                        let (value, text) = try echoed.decode((Int, String).self)
                        #expect(value == task * 1000 + step)
                        #expect(text.count == step * 100)
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
            try await client.query("SELECT COUNT(*), COUNT(DISTINCT task, step) FROM \(unsafeSQL: table)").first
        )
        #expect(try counts.decode((Int, Int).self) == (tasks * 10, tasks * 10))
        try await client.execute("DROP TABLE \(unsafeSQL: table)")
        await client.shutdown()
    }

    @Test(
        "1,000 connections opened and used by 2,000 tasks at once: each task gets its own results, each row is inserted once",
        .enabled(if: scaleTestsEnabled, scaleTestsNote)
    )
    func testScaleThousandConnections() async throws {
        raiseOpenFileLimit()
        // A server of its own: the shared one serves the other tests' connections meanwhile.
        let server = try await TemporaryMariaDB.start()
        let connections = slowdown > 1 ? 200 : 1_000
        var pool = ConnectionPoolConfiguration()
        pool.minimumConnections = connections
        pool.maximumConnections = connections
        pool.acquireTimeout = .seconds(120)
        let client = MariaDBClient(
            configuration: configuration(for: server),
            poolConfiguration: pool,
            ioThreads: Self.threads
        )
        let run = Task { try await client.run() }
        try await waitUntil(120) { client.pool.statistics.idle + client.pool.statistics.leased == connections }
        let observer = try await MariaDBConnection.connect(configuration: configuration(for: server))
        let open = try #require(
            try await observer.query(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND USER = \(server.user)"
            ).first
        ).decode(Int.self, at: 0)
        #expect(open == connections)
        let table = uniqueTable("io_thousand")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (task INT, step INT, PRIMARY KEY (task, step))")
        let tasks = 2 * connections
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    for step in 0..<5 {
                        let echoed = try #require(try await client.query("SELECT \(task) * 10 + \(step)").first)
                        #expect(try echoed.decode(Int.self, at: 0) == task * 10 + step)
                        #expect(
                            try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(task), \(step))") == 1
                        )
                    }
                }
            }
            try await group.waitForAll()
        }
        let counts = try #require(
            try await client.query("SELECT COUNT(*), COUNT(DISTINCT task, step) FROM \(unsafeSQL: table)").first
        )
        #expect(try counts.decode((Int, Int).self) == (tasks * 5, tasks * 5))
        #expect(client.pool.statistics.idle + client.pool.statistics.leased == connections)
        await observer.close()
        run.cancel()
        _ = await run.result
        await client.shutdown()
        await server.stop()
    }

    @Test(
        "typed errors: a failing statement, one that cannot be prepared (not kept), wrong values; the connection goes on"
    )
    func errors() async throws {
        let connection = try await connect(try await testConfiguration())
        let table = uniqueTable("io_errors")
        try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id INT PRIMARY KEY)")
        try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(1))")
        let duplicate = try await #require(throws: MariaDBError.self) {
            try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(1))")
        }
        #expect(duplicate.number == 1062 && duplicate.kind == .server, "\(duplicate)")
        for _ in 0..<2 {
            let syntax = try await #require(throws: MariaDBError.self) { try await connection.query("SELEC 1") }
            #expect(syntax.number == 1064, "\(syntax)")
        }
        let literal = try await #require(throws: MariaDBError.self) {
            try await connection.query(SQLQuery(unsafeSQL: "SELECT ?"))
        }
        #expect(literal.kind == .client && literal.message.contains("1 placeholders but 0 values"), "\(literal)")
        #expect(try await connection.query("SELECT 41 + \(1)").first?.decode(Int.self, at: 0) == 42)
        try await connection.execute("DROP TABLE \(unsafeSQL: table)")
        await connection.close()
    }

    @Test("a procedure's rows come back and its status result is skipped; a changed table is prepared anew")
    func procedureAndChangedTable() async throws {
        let connection = try await connect(try await testConfiguration())
        let table = uniqueTable("io_call")
        try await connection.execute("CREATE TABLE \(unsafeSQL: table) (a INT)")
        try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (1), (2), (3)")
        try await connection.execute(
            "CREATE PROCEDURE \(unsafeSQL: table)_rows(IN n INT) SELECT a * n FROM \(unsafeSQL: table) ORDER BY a"
        )
        for factor in [2, 10] {
            let rows = try await connection.query("CALL \(unsafeSQL: table)_rows(\(factor))")
            #expect(try rows.map { try $0.decode(Int.self, at: 0) } == [factor, 2 * factor, 3 * factor])
        }
        // The cached statement's columns change under it: a read is prepared anew once.
        #expect(try await connection.query("SELECT * FROM \(unsafeSQL: table) ORDER BY a").first?.count == 1)
        try await connection.execute("ALTER TABLE \(unsafeSQL: table) ADD COLUMN b INT DEFAULT 7")
        let widened = try await connection.query("SELECT * FROM \(unsafeSQL: table) ORDER BY a")
        #expect(
            try widened.map { try $0.decode((Int, Int).self) }.map { [$0.0, $0.1] } == [[1, 7], [2, 7], [3, 7]]
        )
        try await connection.execute("DROP PROCEDURE \(unsafeSQL: table)_rows")
        try await connection.execute("DROP TABLE \(unsafeSQL: table)")
        await connection.close()
    }

    @Test(
        "cancelling a running statement kills it on the server; a timeout ends one (the server's); the connection stays usable"
    )
    func cancellationAndTimeout() async throws {
        let configuration = try await testConfiguration()
        // A grace period that scales with the machine: the connection stays usable only if the
        // server itself stopped each statement, which it does within it.
        let connection = try await connect(configuration, gracePeriod: .seconds(2 * slowdown))
        let id = try #require(try await connection.query("SELECT CONNECTION_ID()").first).decode(Int.self, at: 0)
        let observer = try await MariaDBConnection.connect(configuration: configuration)
        // An hour's sleep: whatever the machine's load, it ends only if it is cancelled.
        let task = Task { try await connection.query("SELECT SLEEP(\(3600))") }
        try await waitUntil {
            try await observer.query(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = \(id) AND INFO LIKE 'SELECT SLEEP%'"
            ).first?.decode(Int.self, at: 0) == 1
        }
        // It runs on an I/O thread, not on the connection's own thread.
        let inFlight = SyncBridgeSnapshot.take().executors.filter { $0.name.hasPrefix("sb-io-mdb-") }
            .flatMap { $0.statementsInFlight ?? [] }
        #expect(inFlight.contains { $0.detail == "SELECT SLEEP($1)" }, "\(inFlight)")
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        // The same statement again: killed while its result came, it is prepared anew rather
        // than left to read the rest of a result the server has ended.
        let again = try await withDeadline(30) { try await connection.query("SELECT SLEEP(\(0))") }
        #expect(try again.first?.decode(Int.self, at: 0) == 0)
        let timeout = try await #require(throws: MariaDBError.self) {
            try await connection.query("SELECT SLEEP(3600)", timeout: .milliseconds(300))
        }
        #expect(timeout.kind == .timedOut, "\(timeout)")
        #expect(try await connection.query("SELECT 7").first?.decode(Int.self, at: 0) == 7)
        #expect(connection.isUsable, "a statement was abandoned rather than stopped on the server")
        await observer.close()
        await connection.close()
    }

    @Test("a server that stops answering fails the statement at Connector/C's read timeout, not later")
    func readTimeout() async throws {
        var configuration = try await testConfiguration()
        configuration.readTimeout = .seconds(1)
        let connection = try await connect(configuration)
        let start = ContinuousClock.now
        let error = try await #require(throws: MariaDBError.self) {
            try await connection.query("SELECT SLEEP(3600)")
        }
        #expect(error.kind == .connectionClosed, "\(error)")
        #expect(ContinuousClock.now - start < .seconds(30 * slowdown))
        #expect(!connection.isUsable)
        await connection.close()
    }

    @Test(
        "an I/O thread held up past a statement's read timeout reads the answer that came in time: the statement succeeds"
    )
    func heldUpThreadIsNoTimeout() async throws {
        var configuration = try await testConfiguration()
        configuration.readTimeout = .seconds(3)
        let threads = SQLIOThreads(count: 1, name: "sb-io-held")
        let connection = try await connect(configuration, threads: threads)
        let observer = try await MariaDBConnection.connect(configuration: try await testConfiguration())
        let id = connection.serverConnectionID
        // The server answers a second after the statement is sent, within the timeout; the I/O
        // thread, held up for 4 s once the server runs the statement (as by legacy code wrongly
        // blocking there), reads the answer only after the deadline. A statement that ends
        // before the observer sees it running is tried again.
        var held = false
        for _ in 0..<3 where !held {
            let ended = Locked(false)
            let answer = Task {
                defer { ended.withLock { $0 = true } }
                return try await connection.query("SELECT SLEEP(1), 7")
            }
            let deadline = ContinuousClock.now + .seconds(10 * slowdown)
            while !held, !ended.current, ContinuousClock.now < deadline {
                held = try await processState(observer, id)?.info?.hasPrefix("SELECT SLEEP") == true
            }
            if held { threads.threads[0].execute { usleep(4_000_000) } }
            let rows = try await answer.value
            #expect(try rows.first?.decode(Int.self, at: 1) == 7)
        }
        #expect(held, "the statement was never seen running")
        #expect(connection.isUsable)
        #expect(try await connection.query("SELECT 1").first?.decode(Int.self, at: 0) == 1)
        await observer.close()
        await connection.close()
        threads.shutdown()
    }

    @Test("a connection whose server thread is killed while 200 tasks keep 32 connections busy fails alone")
    func killedConnectionFailsAlone() async throws {
        let configuration = try await testConfiguration()
        let client = makeClient(configuration, connections: 32)
        let observer = try await MariaDBConnection.connect(configuration: configuration)
        let failures = Locked<[MariaDBError]>([])
        let succeeded = Locked(0)
        let attempted = Locked(0)
        let victim = Locked<Int?>(nil)
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
                                try await client.query("SELECT CONNECTION_ID(), \(task * 10_000 + step)").first
                            )
                            let (id, echoed) = try row.decode((Int, Int).self)
                            #expect(echoed == task * 10_000 + step)
                            victim.withLock { $0 = $0 ?? id }
                            succeeded.withLock { $0 += 1 }
                        } catch let error as MariaDBError {
                            failures.withLock { $0.append(error) }
                        }
                        step += 1
                    }
                    attempted.withLock { $0 += step }
                }
            }
            group.addTask {
                try await waitUntil { victim.current != nil && succeeded.current >= tasks * 2 }
                let id = try #require(victim.current)
                try await observer.execute(SQLQuery(unsafeSQL: "KILL CONNECTION \(id)"))
                killed.withLock { $0 = true }
            }
            try await group.waitForAll()
        }
        // Only statements that were on the killed connection fail, with the lost connection
        // (none when it was idle then: its I/O thread found it over, and the pool leased it no
        // more); every other one ran.
        let failed = failures.current
        #expect(failed.allSatisfy { $0.kind == .connectionClosed }, "\(failed)")
        #expect(failed.count <= 64, "\(failed.count) statements failed")
        #expect(succeeded.current + failed.count == attempted.current)
        #expect(try await client.query("SELECT 1").count == 1)
        await observer.close()
        await client.shutdown()
    }

    @Test(
        "a connection whose C client closed its socket (its server thread was killed) never touches the socket that takes its number next: the new connection's statement ends while the old one closes"
    )
    func reusedSocketNumber() async throws {
        let configuration = try await testConfiguration()
        // One thread: both connections' sockets are watched by the same epoll set.
        let threads = SQLIOThreads(count: 1, name: "sb-io-mdb-reuse")
        let observer = try await MariaDBConnection.connect(configuration: configuration)
        var reused = false
        // The next socket takes the lowest free number, which a parallel test may take first:
        // tried until the number is reused.
        for _ in 0..<10 where !reused {
            let victim = try await connect(configuration, threads: threads)
            #expect(try await victim.query("SELECT 1").count == 1)
            let number = try await victim.withRawConnection { mysql in Int32(mysql_get_socket(mysql)) }
            try await observer.execute(SQLQuery(unsafeSQL: "KILL CONNECTION \(victim.serverConnectionID)"))
            // Connector/C finds the connection gone and closes its socket.
            let lost = try await #require(throws: MariaDBError.self) { try await victim.query("SELECT 1") }
            #expect(lost.kind == .connectionClosed, "\(lost)")
            let next = try await connect(configuration, threads: threads)
            let nextNumber = try await next.withRawConnection { mysql in Int32(mysql_get_socket(mysql)) }
            reused = nextNumber == number
            let nextID = next.serverConnectionID
            // The new connection waits for its answer on the I/O thread (for a lock the observer
            // holds) while the old one closes.
            let lock = "sb_reuse_\(Int.random(in: 1...1_000_000_000))"
            _ = try await observer.query("SELECT GET_LOCK(\(lock), 60)")
            let slow = Task { try await next.query("SELECT GET_LOCK(\(lock), 60), 42") }
            try await waitUntil {
                try await observer.query(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = \(Int(nextID)) AND STATE = 'User lock'"
                ).first?.decode(Int.self, at: 0) == 1
            }
            await victim.close()
            _ = try await observer.query("SELECT RELEASE_LOCK(\(lock))")
            // (Cancelled at the deadline, the statement ends within the grace period.)
            let row = try await withDeadline(10) {
                try await withTaskCancellationHandler {
                    try await slow.value
                } onCancel: {
                    slow.cancel()
                }
            }.first
            #expect(try row?.decode(Int.self, at: 1) == 42)
            #expect(try await next.query("SELECT 7").first?.decode(Int.self, at: 0) == 7)
            await next.close()
        }
        #expect(reused, "no new connection got the closed socket's number")
        await observer.close()
        threads.shutdown()
    }

    @Test("statements, transactions, streams and withRawConnection interleave on one connection in submission order")
    func mixedWork() async throws {
        let connection = try await connect(try await testConfiguration())
        let table = uniqueTable("io_mixed")
        try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id INT PRIMARY KEY)")
        for id in 0..<20 {
            if id.isMultiple(of: 3) {
                try await connection.withTransaction { connection in
                    try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(id))")
                }
            } else if id.isMultiple(of: 5) {
                let value = try await connection.withRawConnection { mysql in
                    LegacyMariaDB.firstValue(mysql, "SELECT 6 * 7")
                }
                #expect(value == "42")
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

    @Test("legacy code blocking 300 ms in withRawConnection never holds up the other connections of its I/O thread")
    func rawConnectionDoesNotBlockTheThread() async throws {
        let configuration = try await testConfiguration()
        let threads = SQLIOThreads(count: 1, name: "sb-io-one")
        defer { threads.shutdown() }
        let blocked = try await connect(configuration, threads: threads)
        let others = try await connect(configuration, threads: threads)
        // The legacy code blocks in 300 ms calls until the other connection has completed 20
        // statements (at most 30 s, ten times that under ThreadSanitizer): with the I/O thread
        // held up, it would never get there.
        let completed = Locked(0)
        let inside = Gate()
        let completedWhileBlocked = Task {
            try await blocked.withRawConnection { mysql in
                inside.open()
                let deadline = ContinuousClock.now + .seconds(30 * slowdown)
                repeat {
                    _ = LegacyMariaDB.firstValue(mysql, "SELECT SLEEP(0.3)")
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

/// Tasks that prefer a MariaDB client's I/O thread as their executor (`SQLIOThreads.taskExecutors`).
@Suite("MariaDB: tasks on the I/O threads")
struct MariaDBTasksOnIOThreadsTests {
    @Test(
        "Each thread's task gets the connection its thread serves, resumes on that thread; 16 such tasks get their own rows back and insert each of their 400 rows once"
    )
    func tasksOnIOThreads() async throws {
        let threads = SQLIOThreads(count: 2, name: "sb-io-mtask")
        var pool = ConnectionPoolConfiguration()
        pool.minimumConnections = 2
        pool.maximumConnections = 2
        pool.acquireTimeout = .seconds(60)
        let client = MariaDBClient(
            configuration: try await testConfiguration(),
            poolConfiguration: pool,
            ioThreads: threads
        )
        let run = Task { try await client.run() }
        try await waitUntil { client.pool.statistics.idle == 2 }
        let executors = threads.taskExecutors

        // One task at a time: both connections idle at every lease; each thread's task must get
        // the connection its thread serves, every time.
        var servers: [Set<Int>] = []
        for (index, executor) in executors.enumerated() {
            let name = "sb-io-mtask-\(index + 1)"
            servers.append(
                try await Task(executorPreference: executor) {
                    var seen = Set<Int>()
                    for _ in 0..<10 {
                        let row = try #require(try await client.query("SELECT CONNECTION_ID()").first)
                        seen.insert(try row.decode(Int.self, at: 0))
                        #expect(ThreadIdentity.current.name == name)
                    }
                    return seen
                }.value
            )
        }
        #expect(servers[0].count == 1 && servers[1].count == 1 && servers[0] != servers[1], "\(servers)")

        let table = uniqueTable("io_tasks")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (task INT, step INT, PRIMARY KEY (task, step))")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<16 {
                let name = "sb-io-mtask-\(task % 2 + 1)"
                group.addTask(executorPreference: executors[task % 2]) {
                    for step in 0..<25 {
                        let row = try #require(try await client.query("SELECT \(task) * 1000 + \(step)").first)
                        #expect(try row.decode(Int.self, at: 0) == task * 1000 + step)
                        try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(task), \(step))")
                        #expect(ThreadIdentity.current.name == name)
                    }
                }
            }
            try await group.waitForAll()
        }
        let counted = try #require(
            try await client.query("SELECT COUNT(*), COUNT(DISTINCT task, step) FROM \(unsafeSQL: table)").first
        )
        #expect(try counted.decode((Int, Int).self) == (400, 400))
        try await client.execute("DROP TABLE \(unsafeSQL: table)")
        run.cancel()
        _ = await run.result
        await client.shutdown()
        threads.shutdown()
    }
}
