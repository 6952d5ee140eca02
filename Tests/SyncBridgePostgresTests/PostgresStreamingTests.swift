import Foundation
import SharedTestSupport
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

/// The process's resident memory, in bytes.
func residentMemory() -> Int {
    guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
        let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
    else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

@Suite("PostgreSQL streaming")
struct PostgresStreamingTests {
    @Test("1,000,000 rows (400 MB) stream in bounded memory, in order, each exactly once")
    func millionRows() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            // Held at once, these rows would take over 500 MB as Swift values (410 MB of text
            // alone). Other tests run in this process at the same time and allocate too (up to
            // about 100 MB: a 10 MB BLOB copied several times; under ThreadSanitizer their shadow
            // memory counts as well, and the growth was once 262 MB), so the bound leaves room
            // for them and still tells streaming from buffering.
            let stream = try await connection.stream(
                "SELECT i, repeat('x', 400) FROM generate_series(1, \(1_000_000)) AS i"
            )
            let baseline = residentMemory()
            var peak = baseline
            var expected = 1
            for try await row in stream {
                let (value, text) = try row.decode((Int, String).self)
                guard value == expected, text.utf8.count == 400 else {
                    Issue.record("row \(value) arrived where \(expected) was due")
                    return
                }
                expected += 1
                if expected % 50_000 == 0 { peak = max(peak, residentMemory()) }
            }
            #expect(expected == 1_000_001)
            let growth = peak - baseline
            #expect(growth < 384 * 1024 * 1024, "resident memory grew by \(growth / 1024 / 1024) MB")
            #expect(try await connection.query("SELECT 1").count == 1)
        }
    }

    @Test("stopping early cancels the statement on the server and frees the connection")
    func earlyStop() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            var seen = 0
            for try await _ in try await connection.stream(
                "SELECT i FROM generate_series(1, 10000000) AS i",
                batchSize: 100
            ) {
                seen += 1
                if seen == 250 { break }
            }
            #expect(seen == 250)
            // Dropping the stream queued its clean-up on the connection's thread ahead of this
            // statement, which therefore finds the connection free.
            #expect(try await connection.query("SELECT 5").first?.decode(Int.self, at: 0) == 5)
        }
    }

    @Test("errors surface where the stream is created; other statements are refused while it runs")
    func errorsAndBusy() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let syntax = try await #require(throws: PostgresError.self) { try await connection.stream("SELEC 1") }
            #expect(syntax.sqlState == "42601")
            let stream = try await connection.stream("SELECT i FROM generate_series(1, 5000) AS i", batchSize: 10)
            let busy = try await #require(throws: PostgresError.self) { try await connection.query("SELECT 1") }
            #expect(busy.kind == .connectionBusy)
            let rows = try await stream.collect()
            #expect(rows.count == 5000)
            #expect(try await connection.query("SELECT 1").count == 1)
        }
    }

    @Test("a client's stream holds one pooled connection until it ends or is dropped")
    func pooledStream() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = PostgresClient(connectionString: server.connectionString)
        let total = try await client.stream("SELECT i FROM generate_series(1, 2500) AS i", batchSize: 100)
            .reduce(0) { $0 + (try $1.decode(Int.self, at: 0)) }
        #expect(total == 2500 * 2501 / 2)
        #expect(client.pool.statistics.leased == 0)
        do {
            let stream = try await client.stream("SELECT i FROM generate_series(1, 100000) AS i", batchSize: 10)
            #expect(client.pool.statistics.leased == 1)
            var iterator = stream.makeAsyncIterator()
            _ = try await iterator.next()
        }
        // Dropped: the connection returns once the statement is cancelled and drained.
        let deadline = ContinuousClock.now + .seconds(10)
        while client.pool.statistics.leased != 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(client.pool.statistics.leased == 0)
        #expect(try await client.query("SELECT 3").first?.decode(Int.self, at: 0) == 3)
        await client.shutdown()
    }
}
