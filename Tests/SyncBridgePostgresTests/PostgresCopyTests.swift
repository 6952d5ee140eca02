import Foundation
import SharedTestSupport
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

/// Chunks of COPY data from an array, as an async sequence (optionally failing midway).
struct Chunks: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    let chunks: [[UInt8]]
    var failAfter: Int? = nil

    struct SourceFailed: Error {}

    struct AsyncIterator: AsyncIteratorProtocol {
        var remaining: ArraySlice<[UInt8]>
        var failAfter: Int?
        var sent = 0

        mutating func next() async throws -> [UInt8]? {
            if let failAfter, sent == failAfter { throw SourceFailed() }
            sent += 1
            return remaining.popFirst()
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(remaining: chunks[...], failAfter: failAfter)
    }
}

@Suite("PostgreSQL COPY")
struct PostgresCopyTests {
    @Test("COPY FROM STDIN loads 100,000 rows with tricky text exactly; COPY TO STDOUT exports them")
    func roundTrip() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("copy")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id int, label text, data bytea)")
            let tricky = "tab\there, newline\nthere, back\\slash, \\N, ✓"
            // 100,000 rows encoded in a debug build take longer than the watchdog allows a
            // cooperative thread: the test data is made off the pool.
            let chunks = try await offloaded { () throws -> [[UInt8]] in
                var chunk: [UInt8] = []
                var chunks: [[UInt8]] = []
                for id in 1...100_000 {
                    let label: SQLValue = id % 10 == 0 ? .null : .text("\(tricky) \(id)")
                    chunk += try PostgresCopy.textRow([
                        .int(Int64(id)), label, .bytes([0, 9, 10, 92, UInt8(id % 256)]),
                    ])
                    if chunk.count > 64 * 1024 {
                        chunks.append(chunk)
                        chunk = []
                    }
                }
                chunks.append(chunk)
                return chunks
            }
            let loaded = try await connection.copyFrom(
                "COPY \(unsafeSQL: table) (id, label, data) FROM STDIN",
                data: Chunks(chunks: chunks)
            )
            #expect(loaded == 100_000)

            let sample = try #require(
                try await connection.query("SELECT label, data FROM \(unsafeSQL: table) WHERE id = 77").first
            )
            #expect(try sample.decode(String.self, at: 0) == "\(tricky) 77")
            #expect(try sample.decode([UInt8].self, at: 1) == [0, 9, 10, 92, 77])
            #expect(
                try await connection.query("SELECT count(*) FROM \(unsafeSQL: table) WHERE label IS NULL").first?
                    .decode(Int.self, at: 0) == 10_000
            )

            var exported = 0
            var bytes = 0
            for try await line in try await connection.copyTo("COPY \(unsafeSQL: table) TO STDOUT") {
                exported += 1
                bytes += line.count
                #expect(line.last == UInt8(ascii: "\n"))
            }
            #expect(exported == 100_000)
            #expect(bytes == chunks.reduce(0) { $0 + $1.count })
        }
    }

    @Test("bad COPY data is rejected whole with a typed error; the connection stays usable")
    func badData() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("badcopy")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id int)")
            let data = Chunks(chunks: [Array("1\n2\nnot a number\n4\n".utf8)])
            let error = try await #require(throws: PostgresError.self) {
                try await connection.copyFrom("COPY \(unsafeSQL: table) FROM STDIN", data: data)
            }
            #expect(error.sqlState == "22P02")
            #expect(
                try await connection.query("SELECT count(*) FROM \(unsafeSQL: table)").first?.decode(Int.self, at: 0)
                    == 0
            )
        }
    }

    @Test("when the data source fails, the COPY is aborted and nothing is loaded")
    func failingSource() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            let table = uniqueTable("abortcopy")
            try await connection.execute("CREATE TABLE \(unsafeSQL: table) (id int)")
            let data = Chunks(chunks: [Array("1\n".utf8), Array("2\n".utf8)], failAfter: 1)
            await #expect(throws: Chunks.SourceFailed.self) {
                try await connection.copyFrom("COPY \(unsafeSQL: table) FROM STDIN", data: data)
            }
            #expect(
                try await connection.query("SELECT count(*) FROM \(unsafeSQL: table)").first?.decode(Int.self, at: 0)
                    == 0
            )
        }
    }

    @Test("dropping a COPY TO STDOUT early cancels it; parameters are refused")
    func earlyStopAndParameters() async throws {
        try await withTestConnection { (connection) async throws -> Void in
            var seen = 0
            for try await _ in try await connection.copyTo(
                "COPY (SELECT generate_series(1, 5000000)) TO STDOUT",
                maximumBatchBytes: 1024
            ) {
                seen += 1
                if seen == 10 { break }
            }
            #expect(seen == 10)
            #expect(try await connection.query("SELECT 9").first?.decode(Int.self, at: 0) == 9)
            await #expect(throws: SQLEncodingError.self) {
                try await connection.copyTo("COPY (SELECT \(1)) TO STDOUT")
            }
        }
    }
}

@Suite("PostgreSQL COPY through the pool")
struct PostgresPooledCopyTests {
    @Test("rows in, lines out; the connection goes back to the pool afterwards")
    func pooled() async throws {
        let server = try await SyncBridgeTesting.TemporaryPostgres.shared()
        let client = PostgresClient(connectionString: server.connectionString)
        let table = uniqueTable("pooledcopy")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (id int, name text)")
        let loaded = try await client.copyFrom(
            "COPY \(unsafeSQL: table) (id, name) FROM STDIN",
            rows: (1...1000).map { [SQLValue.int(Int64($0)), .text("item \($0)")] }
        )
        #expect(loaded == 1000)
        let lines = try await client.copyTo("COPY (SELECT id, name FROM \(unsafeSQL: table) ORDER BY id) TO STDOUT")
            .collect()
        #expect(lines.count == 1000)
        #expect(lines.first == Array("1\titem 1\n".utf8))
        #expect(client.pool.statistics.leased == 0)
        await client.shutdown()
    }
}
