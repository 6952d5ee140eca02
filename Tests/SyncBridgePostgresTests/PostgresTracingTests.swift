import CLibPQ
import InMemoryTracing
import SharedTestSupport
import SyncBridge
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing
import Tracing

@Suite("PostgreSQL tracing")
struct PostgresTracingTests {
    @Test(
        "each call is a client span under the caller's, with OpenTelemetry's attributes and its waits as children; a failure carries its SQLSTATE; no bound value or password anywhere"
    )
    func spans() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = PostgresClient(connectionString: server.connectionString, name: "traced")
        let table = uniqueTable("traced")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (v text)")
        let secret = "secret-\(UInt64.random(in: 1...UInt64.max))"
        let tracer = InMemoryTracer()
        let request = try await withTracer(tracer) {
            try await tracer.withSpan("request") { request in
                _ = try await client.query("SELECT v FROM \(unsafeSQL: table) WHERE v <> \(secret)")
                _ = try? await client.execute("INSERT INTO \(unsafeSQL: table)_missing VALUES (\(secret))")
                try await client.withTransaction { connection in
                    try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(secret))")
                }
                for try await _ in try await client.stream("SELECT v FROM \(unsafeSQL: table)") {}
                #expect(try await client.withRawConnection { PQstatus($0) == CONNECTION_OK })
                return request.spanID
            }
        }
        let trace = RecordedTrace(tracer)
        let calls = trace.children(of: request)
        #expect(
            calls.map(\.operationName) == [
                "SELECT \(table)", "INSERT \(table)_missing", "transaction", "SELECT \(table)", "withRawConnection",
            ]
        )
        for call in calls {
            #expect(call.kind == .client)
            #expect(RecordedTrace.text(call, "db.system.name") == "postgresql")
            #expect(RecordedTrace.text(call, "db.namespace") == server.database)
            #expect(RecordedTrace.text(call, "server.address") == "127.0.0.1")
            #expect(RecordedTrace.text(call, "server.port") == "\(server.port)")
            // The wait for a pooled connection comes first, as a child of its own.
            let waits = trace.children(of: call.spanID).map(\.operationName)
            #expect(waits.first == "wait for connection", "\(call.operationName): \(waits)")
            #expect(waits.contains("wait for thread"), "\(call.operationName): \(waits)")
        }
        let select = calls[0]
        #expect(RecordedTrace.text(select, "db.operation.name") == "SELECT")
        #expect(RecordedTrace.text(select, "db.collection.name") == table)
        #expect(RecordedTrace.text(select, "db.query.text") == "SELECT v FROM \(table) WHERE v <> $1")
        let poolWait = try #require(trace.children(of: select.spanID).first)
        #expect(RecordedTrace.text(poolWait, "db.client.connection.pool.name") == "traced")
        let threadWait = try #require(trace.children(of: select.spanID).last)
        // The connection's own thread, or its I/O thread (the default; `SYNCBRIDGE_IO_THREADS=0` for the former).
        let thread = RecordedTrace.text(threadWait, "syncbridge.executor.name") ?? ""
        #expect(thread.hasPrefix("sb-postgres-") || thread.hasPrefix("sb-io-"), "\(thread)")

        let failed = calls[1]
        #expect(failed.status?.code == .error)
        #expect(RecordedTrace.text(failed, "db.response.status_code") == "42P01")
        #expect(RecordedTrace.text(failed, "error.type") == "42P01")
        #expect(failed.errors.count == 1)

        // The transaction's statement nests under the transaction.
        let inTransaction = trace.children(of: calls[2].spanID).filter { $0.kind == .client }
        #expect(inTransaction.map(\.operationName) == ["INSERT \(table)"])

        #expect(trace.mentions(of: secret).isEmpty, "\(trace.mentions(of: secret))")
        #expect(trace.mentions(of: server.password).isEmpty, "\(trace.mentions(of: server.password))")
        await client.shutdown()
    }

    @Test(
        "a connection's own calls, COPY and a BlockingPool's jobs are spans too: the thread's queue is a wait span, the job sees the caller's context"
    )
    func connectionCopyAndPool() async throws {
        let server = try await TemporaryPostgres.shared()
        let connection = try await PostgresConnection.connect(server.connectionString)
        let table = uniqueTable("copied")
        try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id int, name text)")
        let pool = BlockingPool(name: "traced-pool", threadCount: 1)
        let tracer = InMemoryTracer()
        let (request, jobSpan) = try await withTracer(tracer) {
            try await tracer.withSpan("request") { request in
                _ = try await connection.query("SELECT count(*) FROM \(unsafeSQL: table)")
                try await connection.copyFrom(
                    "COPY \(unsafeSQL: table) (id, name) FROM STDIN",
                    rows: [[.int(1), .text("a")]]
                )
                let job = try await pool.run {
                    ServiceContext.current.flatMap { tracer.activeSpan(identifiedBy: $0)?.spanID }
                }
                return (request.spanID, job)
            }
        }
        let trace = RecordedTrace(tracer)
        let calls = trace.children(of: request)
        #expect(calls.map(\.operationName) == ["SELECT \(table)", "COPY \(table)", "wait for thread"])
        // A connection's own call waits for no pool, only for its thread.
        #expect(trace.children(of: calls[0].spanID).map(\.operationName) == ["wait for thread"])
        #expect(RecordedTrace.text(calls[1], "db.operation.name") == "COPY")
        #expect(RecordedTrace.text(calls[2], "syncbridge.executor.name") == "traced-pool")
        #expect(RecordedTrace.text(calls[2], "syncbridge.executor.kind") == "BlockingPool")
        // The job ran with the request's context: the request's span was the active one there.
        #expect(jobSpan == request)
        await connection.close()
        await pool.shutdownGracefully()
    }

    @Test(
        "work queued behind a statement in flight still runs for its caller: its wait for the thread is a span from when it asked, and the legacy code sees the caller's span"
    )
    func queuedBehindStatement() async throws {
        let server = try await TemporaryPostgres.shared()
        let connection = try await PostgresConnection.connect(server.connectionString)
        let holder = try await PostgresConnection.connect(server.connectionString)
        let tracer = InMemoryTracer()
        /// Runs `body` while a statement holds the connection (in flight on its I/O thread by
        /// default, on its own thread without one): one waiting for an advisory lock that
        /// `holder` lets go only once the span `name` of the call in `body` has started. Returns
        /// when the lock was let go: the statement ahead ended after it.
        func behindStatement(spanNamed name: String, _ body: () async throws -> Void) async throws -> UInt64 {
            let key = Int.random(in: 1...Int(Int32.max))
            // Detached, as the statements below: they are not the request's.
            _ = try await Task.detached { try await holder.execute("SELECT pg_advisory_lock(\(key))") }.value
            let blocker: SQLQuery = "SELECT pg_advisory_xact_lock(\(key))"
            let blocked = Task.detached { try await connection.execute(blocker) }
            try await waitUntil {
                SyncBridgeSnapshot.take().executors.contains { executor in
                    (executor.threads.compactMap(\.job) + (executor.statementsInFlight ?? [])).contains {
                        $0.detail == "\(blocker)"
                    }
                }
            }
            let releaser = Task.detached {
                try await waitUntil { tracer.activeSpans.contains { $0.operationName == name } }
                let letGo = DefaultTracerClock.now.nanosecondsSinceEpoch
                try await holder.execute("SELECT pg_advisory_unlock(\(key))")
                return letGo
            }
            try await body()
            _ = try await blocked.value
            return try await releaser.value
        }
        let (request, letGo, seen) = try await withTracer(tracer) {
            try await tracer.withSpan("request") { request in
                // A stream's statement is blocking work for the connection's thread; so is legacy code.
                let streamed = try await behindStatement(spanNamed: "SELECT") {
                    for try await _ in try await connection.stream("SELECT 1") {}
                }
                var seen: String?
                let raw = try await behindStatement(spanNamed: "withRawConnection") {
                    seen = try await connection.withRawConnection { _ in
                        ServiceContext.current.flatMap { tracer.activeSpan(identifiedBy: $0)?.spanID }
                    }
                }
                return (request.spanID, [streamed, raw], seen)
            }
        }
        let trace = RecordedTrace(tracer)
        let calls = trace.children(of: request)
        #expect(calls.map(\.operationName) == ["SELECT", "withRawConnection"])
        for (call, letGo) in zip(calls, letGo) {
            // A stream waits for the thread once for its statement, then for each batch of rows.
            let waits = trace.children(of: call.spanID)
            #expect(!waits.isEmpty && waits.allSatisfy { $0.operationName == "wait for thread" })
            // The first, from when the call asked (before the statement ahead could end) to after
            // that statement ended.
            let wait = try #require(waits.first)
            #expect(wait.startInstant.nanosecondsSinceEpoch < letGo, "\(call.operationName)")
            #expect(wait.endInstant.nanosecondsSinceEpoch > letGo, "\(call.operationName)")
        }
        #expect(seen == calls.last?.spanID)
        await holder.close()
        await connection.close()
    }

    @Test("without a tracer, the caller's context still reaches the connection's thread for the legacy code there")
    func contextWithoutTracer() async throws {
        let server = try await TemporaryPostgres.shared()
        let connection = try await PostgresConnection.connect(server.connectionString)
        enum RequestKey: ServiceContextKey {
            typealias Value = String
        }
        var context = ServiceContext.topLevel
        context[RequestKey.self] = "request-7"
        let seen = try await ServiceContext.$current.withValue(context) {
            try await connection.withRawConnection { _ in ServiceContext.current?[RequestKey.self] }
        }
        #expect(seen == "request-7")
        await connection.close()
    }
}
