import Foundation
import InMemoryTracing
import SharedTestSupport
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing
import Tracing

@Suite("PostgreSQL pipelines")
struct PostgresPipelineTests {
    /// The ids in `table`, in order.
    func ids(in table: String, on connection: PostgresConnection) async throws -> [Int] {
        try await connection.query("SELECT id FROM \(unsafeSQL: table) ORDER BY id").map {
            try $0.decode(Int.self, at: 0)
        }
    }

    /// The server error in `result`, or `nil`.
    func serverError(_ result: Result<SQLOutcome, any Error>) -> PostgresError? {
        guard case .failure(let error) = result else { return nil }
        return error as? PostgresError
    }

    /// Waits until the server runs `SELECT pg_sleep…` for the backend `pid`.
    func waitForTheSleep(of pid: Int32) async throws {
        let observer = try await connectToTestServer()
        try await withClosing(observer) { observer in
            try await waitUntil(20) {
                try await observer.query(
                    """
                    SELECT count(*) FROM pg_stat_activity
                    WHERE pid = \(pid) AND state = 'active' AND query LIKE 'SELECT pg_sleep%'
                    """
                ).first?.decode(Int.self, at: 0) == 1
            }
        }
    }

    @Test("a failed statement fails alone: the others take effect and each result is its own statement's")
    func failureFailsAlone() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("pipelined")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id int PRIMARY KEY, note text)")
            let results = try await connection.pipeline([
                "INSERT INTO \(unsafeSQL: table) VALUES (\(1), \("one"))",
                "INSERT INTO \(unsafeSQL: table) VALUES (\(2), \("two"))",
                "INSERT INTO \(unsafeSQL: table) VALUES (\(1), \("again"))",
                "INSERT INTO \(unsafeSQL: table) VALUES (\(4), \("a\u{0}b"))",
                "SELECT count(*) FROM \(unsafeSQL: table)",
                "INSERT INTO \(unsafeSQL: table) VALUES (\(3), \("three")) RETURNING id * 10",
            ])
            #expect(results.count == 6)
            #expect(try results[0].get().rowsAffected == 1)
            #expect(try results[1].get().rowsAffected == 1)
            let duplicate = try #require(serverError(results[2]))
            #expect(duplicate.sqlState == "23505")
            #expect(duplicate.query?.contains("INSERT INTO \(table)") == true)
            #expect(duplicate.query?.contains("again") == false, "the error shows values")
            guard case .failure(let encoding as SQLEncodingError) = results[3] else {
                Issue.record("expected an encoding error, got \(results[3])")
                return
            }
            #expect(encoding.parameter == 2)
            #expect(try results[4].get().rows.first?.decode(Int.self, at: 0) == 2)
            #expect(try results[5].get().rows.first?.decode(Int.self, at: 0) == 30)
            #expect(try await ids(in: table, on: connection) == [1, 2, 3])
            // The connection is usable afterwards, out of pipeline mode.
            #expect(try await connection.query("SELECT \(7)::int").first?.decode(Int.self, at: 0) == 7)
        }
    }

    @Test("a statement that repeats in a pipeline is prepared once; one that fails to prepare fails in its own places")
    func repeatedStatements() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let missing = uniqueTable("missing")
            var statements: [SQLQuery] = []
            for value in 1...6 {
                statements.append("SELECT \(value)::int + 1000")
                if value.isMultiple(of: 3) { statements.append("SELECT * FROM \(unsafeSQL: missing)") }
            }
            let results = try await connection.pipeline(statements)
            var values: [Int] = []
            var missingErrors = 0
            for result in results {
                switch result {
                case .success(let outcome): values.append(try outcome.rows[0].decode(Int.self, at: 0))
                case .failure(let error as PostgresError) where error.sqlState == "42P01": missingErrors += 1
                case .failure(let error): Issue.record("unexpected \(error)")
                }
            }
            #expect(values == Array(1001...1006))
            #expect(missingErrors == 2)
            let prepared = try await connection.query(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int + 1000'"
            )
            #expect(try prepared.first?.decode(Int.self, at: 0) == 1)
        }
    }

    @Test(
        "inside a transaction the server refuses the statements after a failure (25P02) and the transaction rolls back"
    )
    func insideATransaction() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("pipelined_tx")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id int PRIMARY KEY)")
            // The body returns normally with the failures in its results: COMMIT then finds the
            // transaction aborted, and says so.
            var results: [Result<SQLOutcome, any Error>] = []
            let commit = try await #require(throws: PostgresError.self) {
                try await connection.withTransaction { tx in
                    results = try await tx.pipeline([
                        "INSERT INTO \(unsafeSQL: table) VALUES (\(1))",
                        "INSERT INTO \(unsafeSQL: table) VALUES (\(2))",
                        "INSERT INTO \(unsafeSQL: table) VALUES (\(2))",
                        "INSERT INTO \(unsafeSQL: table) VALUES (\(3))",
                    ])
                }
            }
            #expect(commit.sqlState == "25P02")
            #expect(commit.message.contains("rolled back instead of committing"))
            #expect(try results[0].get().rowsAffected == 1)
            #expect(try results[1].get().rowsAffected == 1)
            #expect(serverError(results[2])?.sqlState == "23505")
            #expect(serverError(results[3])?.sqlState == "25P02")
            #expect(try await ids(in: table, on: connection) == [])

            // Without a failure the transaction commits all of it.
            try await connection.withTransaction { tx in
                for result in try await tx.pipeline((1...3).map { "INSERT INTO \(unsafeSQL: table) VALUES (\($0))" }) {
                    _ = try result.get()
                }
            }
            #expect(try await ids(in: table, on: connection) == [1, 2, 3])
        }
    }

    @Test("10,000 statements in one pipeline: every result in order, nothing lost, no deadlock on full buffers")
    func tenThousandStatements() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("pipelined_many")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id int PRIMARY KEY, padding text)")
            // Prepared already: the pipeline uses the connection's prepared statement.
            #expect(try await connection.query("SELECT \(0)::int").first?.decode(Int.self, at: 0) == 0)
            let padding = String(repeating: "x", count: 200)
            var statements: [SQLQuery] = []
            for id in 1...5_000 {
                statements.append("INSERT INTO \(unsafeSQL: table) VALUES (\(id), \(padding))")
                statements.append("SELECT \(id)::int")
            }
            let results = try await connection.pipeline(statements)
            #expect(results.count == 10_000)
            var mismatched = 0
            for (offset, result) in results.enumerated() {
                let outcome = try result.get()
                if offset.isMultiple(of: 2) {
                    if outcome.rowsAffected != 1 { mismatched += 1 }
                } else if try outcome.rows.first?.decode(Int.self, at: 0) != offset / 2 + 1 {
                    mismatched += 1
                }
            }
            #expect(mismatched == 0)
            #expect(try await ids(in: table, on: connection) == Array(1...5_000))
        }
    }

    @Test(
        "cancelling the task stops the running statement and throws CancellationError; in a transaction nothing stands"
    )
    func cancellation() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("pipelined_cancel")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id int PRIMARY KEY)")
            let pid = try #require(try await connection.query("SELECT pg_backend_pid()").first).decode(
                Int32.self,
                at: 0
            )

            // In a transaction: the sleep is cancelled, the server refuses the rest, and the
            // transaction rolls back. (An hour's sleep: the cancel comes while it runs, however
            // long a loaded machine takes to see it running.)
            let inTransaction = Task {
                try await connection.withTransaction { tx in
                    try await tx.pipeline([
                        "INSERT INTO \(unsafeSQL: table) VALUES (\(1))",
                        "SELECT pg_sleep(3600)",
                        "INSERT INTO \(unsafeSQL: table) VALUES (\(2))",
                    ])
                }
            }
            try await waitForTheSleep(of: pid)
            inTransaction.cancel()
            await #expect(throws: CancellationError.self) { try await inTransaction.value }
            #expect(try await ids(in: table, on: connection) == [])

            // Outside one: the statements already sent run on their own (documented).
            let alone = Task {
                try await connection.pipeline([
                    "SELECT pg_sleep(3600)",
                    "INSERT INTO \(unsafeSQL: table) VALUES (\(3))",
                ])
            }
            try await waitForTheSleep(of: pid)
            alone.cancel()
            await #expect(throws: CancellationError.self) { try await alone.value }
            #expect(try await ids(in: table, on: connection) == [3])
            #expect(try await connection.query("SELECT \(5)::int").first?.decode(Int.self, at: 0) == 5)
        }
    }

    @Test(
        "an atomic pipeline of 1,000 inserts stands whole; one failing at statement 700 leaves nothing and names it; one with a value that cannot be sent sends nothing"
    )
    func atomicPipeline() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("atomic")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id int PRIMARY KEY)")
            // More statements than the pipeline's window: the server is asked to flush its
            // answers without a sync point between them (else both sides wait: a deadline says so).
            let outcomes = try await withDeadline(60) {
                try await connection.atomicPipeline(
                    (0..<1_000).map { "INSERT INTO \(unsafeSQL: table) VALUES (\($0)) RETURNING id" }
                )
            }
            #expect(try outcomes.map { try $0.rows.first?.decode(Int.self, at: 0) } == Array(0..<1_000))
            #expect(try await ids(in: table, on: connection) == Array(0..<1_000))

            // Statement 700 repeats id 1,000: the whole batch is undone, the rest never ran.
            let failing = (1_000..<2_000).map { id in
                "INSERT INTO \(unsafeSQL: table) VALUES (\(id == 1_700 ? 1_000 : id))" as SQLQuery
            }
            let duplicate = try await #require(throws: PostgresError.self) {
                try await connection.atomicPipeline(failing)
            }
            #expect(duplicate.sqlState == "23505")
            #expect(duplicate.statementIndex == 700)
            #expect(duplicate.description.contains("statement 700 of the pipeline"))
            #expect(try await ids(in: table, on: connection) == Array(0..<1_000))

            // A value that cannot be sent (a NUL in text) fails the call before anything is sent.
            await #expect(throws: SQLEncodingError.self) {
                try await connection.atomicPipeline([
                    "INSERT INTO \(unsafeSQL: table) VALUES (\(5_000))",
                    "SELECT \("a\u{0}b")::text",
                ])
            }
            #expect(try await ids(in: table, on: connection).count == 1_000)

            // In a transaction: the batch is part of it, and commits with it.
            try await connection.withTransaction { transaction in
                _ = try await transaction.atomicPipeline([
                    "INSERT INTO \(unsafeSQL: table) VALUES (\(6_000))",
                    "INSERT INTO \(unsafeSQL: table) VALUES (\(6_001))",
                ])
            }
            #expect(try await ids(in: table, on: connection).suffix(2) == [6_000, 6_001])
            #expect(try await connection.query("SELECT \(9)::int").first?.decode(Int.self, at: 0) == 9)
        }
    }

    @Test("cancelling an atomic pipeline stops it on the server and leaves nothing of it")
    func atomicPipelineCancellation() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("atomic_cancel")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id int PRIMARY KEY)")
            let pid = try #require(try await connection.query("SELECT pg_backend_pid()").first).decode(
                Int32.self,
                at: 0
            )
            let batch = Task {
                try await connection.atomicPipeline([
                    "INSERT INTO \(unsafeSQL: table) VALUES (\(1))",
                    "SELECT pg_sleep(3600)",
                    "INSERT INTO \(unsafeSQL: table) VALUES (\(2))",
                ])
            }
            try await waitForTheSleep(of: pid)
            batch.cancel()
            await #expect(throws: CancellationError.self) { try await batch.value }
            #expect(try await ids(in: table, on: connection) == [])
            #expect(connection.isUsable)
            #expect(try await connection.query("SELECT \(3)::int").first?.decode(Int.self, at: 0) == 3)
        }
    }

    @Test("a timeout on the pipeline ends it with the typed timeout error and keeps the connection")
    func timeout() async throws {
        // The connection is kept when the server answers the cancel within the grace period;
        // beside the whole suite a cancel request has taken most of a second (a backend forked
        // for it), and once more than the default 2 s: this test is about the error and the
        // connection, not about that bound (the fault tests are).
        let server = try await TemporaryPostgres.shared()
        let connection = try await PostgresConnection.connect(
            configuration: PostgresConfiguration(connectionString: server.connectionString),
            cancellationGracePeriod: .seconds(10)
        )
        try await withClosing(connection) { (connection) async throws -> Void in
            let error = try await #require(throws: PostgresError.self) {
                try await connection.pipeline(["SELECT pg_sleep(60)", "SELECT 1"], timeout: .milliseconds(200))
            }
            #expect(error.kind == .timedOut)
            #expect(error.isQueryCanceled)
            #expect(try await connection.query("SELECT \(6)::int").first?.decode(Int.self, at: 0) == 6)
        }
    }

    @Test(
        "through a proxy 5 ms away each way: correct results, and a timeout that passes while statements are queued returns within its bound"
    )
    func throughTheLatencyProxy() async throws {
        let server = try await TemporaryPostgres.shared()
        let proxy = try LatencyProxy(forwardingTo: server.port, delay: .milliseconds(5))
        defer { proxy.stop() }
        let far = server.connectionString.replacingOccurrences(of: "port=\(server.port)", with: "port=\(proxy.port)")
        // The grace period scales with the machine: under ThreadSanitizer the server may need
        // longer than 2 s to finish the statements ahead of the cancelled one.
        let connection = try await PostgresConnection.connect(
            configuration: PostgresConfiguration(connectionString: far),
            cancellationGracePeriod: .seconds(2 * slowdown)
        )
        try await withClosing(connection) { (connection) async throws -> Void in
            // The proxy delays: a round trip takes at least 10 ms.
            let clock = ContinuousClock()
            let roundTrip = try await clock.measure { _ = try await connection.query("SELECT 1") }
            #expect(roundTrip >= .milliseconds(10))

            let results = try await connection.pipeline((1...500).map { "SELECT \($0)::int" })
            let values = try results.map { try $0.get().rows.first?.decode(Int.self, at: 0) }
            #expect(values == Array(1...500))

            // More than the proxy's buffer and the sockets' in each direction arrives whole.
            let sent = String(repeating: "abcdefghij", count: 300_000)
            let echoed = try await connection.query("SELECT length(\(sent)), md5(\(sent)), repeat('x', 4000000)")
            #expect(try echoed[0].decode(Int.self, at: 0) == 3_000_000)
            #expect(try echoed[0].decode(String.self, at: 1) == "34405b120931c5adb010d2a91e27ae35")
            #expect(try echoed[0].decode(String.self, at: 2) == String(repeating: "x", count: 4_000_000))

            // 3,000 statements of 2 ms each: the timeout passes with most of them unsent.
            let started = clock.now
            let error = try await #require(throws: PostgresError.self) {
                try await connection.pipeline(
                    Array(repeating: "SELECT pg_sleep(0.002)", count: 3_000),
                    timeout: .milliseconds(300)
                )
            }
            #expect(error.kind == .timedOut)
            // The timeout plus the cancellation grace period, with room for a loaded machine.
            #expect(clock.now - started < .seconds(10 * slowdown))
            // At most 256 statements were ahead of the cancelled one: the server finished them
            // within the grace period, and the connection is still usable.
            #expect(try await connection.query("SELECT \(8)::int").first?.decode(Int.self, at: 0) == 8)
        }
    }

    @Test("a pipeline is one client span with its batch size and no bound value")
    func span() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let secret = "secret-\(UInt64.random(in: 1...UInt64.max))"
            let tracer = InMemoryTracer()
            let request = try await withTracer(tracer) {
                try await tracer.withSpan("request") { request in
                    _ = try await connection.pipeline(["SELECT \(secret)::text", "SELECT 2", "SELECT 3"])
                    return request.spanID
                }
            }
            let trace = RecordedTrace(tracer)
            let calls = trace.children(of: request)
            #expect(calls.map(\.operationName) == ["pipeline"])
            let pipeline = try #require(calls.first)
            #expect(pipeline.kind == .client)
            #expect(RecordedTrace.text(pipeline, "db.system.name") == "postgresql")
            #expect(RecordedTrace.text(pipeline, "db.operation.batch.size") == "3")
            #expect(trace.mentions(of: secret).isEmpty, "\(trace.mentions(of: secret))")
        }
    }

    @Test("an atomic pipeline that fails is one client span carrying the failed statement's SQLSTATE")
    func atomicSpan() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let tracer = InMemoryTracer()
            let request = await withTracer(tracer) {
                await tracer.withSpan("request") { request in
                    await #expect(throws: PostgresError.self) {
                        try await connection.atomicPipeline(["SELECT 1", "SELECT 1 / \(0)", "SELECT 3"])
                    }
                    return request.spanID
                }
            }
            let trace = RecordedTrace(tracer)
            let calls = trace.children(of: request)
            #expect(calls.map(\.operationName) == ["pipeline"])
            let pipeline = try #require(calls.first)
            #expect(pipeline.kind == .client)
            #expect(RecordedTrace.text(pipeline, "db.operation.batch.size") == "3")
            #expect(pipeline.status?.code == .error)
            #expect(RecordedTrace.text(pipeline, "error.type") == "22012")
        }
    }

    @Test("the client runs a pipeline and an atomic pipeline on a pooled connection")
    func client() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = PostgresClient(connectionString: server.connectionString, name: "sb-pipeline")
        let results = try await client.pipeline((1...50).map { "SELECT \($0)::int * 2" })
        let values = try results.map { try $0.get().rows.first?.decode(Int.self, at: 0) }
        #expect(values == (1...50).map { $0 * 2 })
        let outcomes = try await client.atomicPipeline((1...50).map { "SELECT \($0)::int * 3" })
        #expect(try outcomes.map { try $0.rows.first?.decode(Int.self, at: 0) } == (1...50).map { $0 * 3 })
        await client.shutdown()
    }
}
