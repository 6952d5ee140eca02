import CMariaDB
import InMemoryTracing
import SharedTestSupport
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgeSQL
import SyncBridgeTesting
import Testing
import Tracing

@Suite("MariaDB tracing")
struct MariaDBTracingTests {
    @Test(
        "each call is a client span under the caller's, with OpenTelemetry's attributes and its waits as children; a failure carries its error number; no bound value or password anywhere"
    )
    func spans() async throws {
        let server = try await TemporaryMariaDB.shared()
        let client = MariaDBClient(configuration: configuration(for: server), name: "traced")
        let table = uniqueTable("traced")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (v VARCHAR(64))")
        let secret = "secret-\(UInt64.random(in: 1...UInt64.max))"
        let tracer = InMemoryTracer()
        let request = try await withTracer(tracer) {
            try await tracer.withSpan("request") { request in
                _ = try await client.query("SELECT v FROM \(unsafeSQL: table) WHERE v <> \(secret)")
                // A duplicate key's message quotes the value: the span must not.
                try await client.execute("CREATE TABLE \(unsafeSQL: table)_unique (v VARCHAR(64) PRIMARY KEY)")
                try await client.execute("INSERT INTO \(unsafeSQL: table)_unique VALUES (\(secret))")
                _ = try? await client.execute("INSERT INTO \(unsafeSQL: table)_unique VALUES (\(secret))")
                try await client.withTransaction { connection in
                    try await connection.execute("INSERT INTO \(unsafeSQL: table) VALUES (\(secret))")
                }
                for try await _ in try await client.stream("SELECT v FROM \(unsafeSQL: table)") {}
                #expect(try await client.withRawConnection { mysql_ping($0) == 0 })
                return request.spanID
            }
        }
        let trace = RecordedTrace(tracer)
        let calls = trace.children(of: request)
        #expect(
            calls.map(\.operationName) == [
                "SELECT \(table)", "CREATE", "INSERT \(table)_unique", "INSERT \(table)_unique", "transaction",
                "SELECT \(table)", "withRawConnection",
            ]
        )
        for call in calls {
            #expect(call.kind == .client)
            #expect(RecordedTrace.text(call, "db.system.name") == "mariadb")
            #expect(RecordedTrace.text(call, "db.namespace") == server.database)
            #expect(RecordedTrace.text(call, "server.address") == server.host)
            #expect(RecordedTrace.text(call, "server.port") == "\(server.port)")
            let waits = trace.children(of: call.spanID).map(\.operationName)
            #expect(waits.first == "wait for connection", "\(call.operationName): \(waits)")
            #expect(waits.contains("wait for thread"), "\(call.operationName): \(waits)")
        }
        #expect(RecordedTrace.text(calls[0], "db.query.text") == "SELECT v FROM \(table) WHERE v <> ?")
        let duplicate = calls[3]
        #expect(duplicate.status?.code == .error)
        #expect(RecordedTrace.text(duplicate, "db.response.status_code") == "1062")
        #expect(RecordedTrace.text(duplicate, "error.type") == "1062")
        let inTransaction = trace.children(of: calls[4].spanID).filter { $0.kind == .client }
        #expect(inTransaction.map(\.operationName) == ["INSERT \(table)"])

        #expect(trace.mentions(of: secret).isEmpty, "\(trace.mentions(of: secret))")
        #expect(trace.mentions(of: server.password).isEmpty, "\(trace.mentions(of: server.password))")
        await client.shutdown()
    }
}
