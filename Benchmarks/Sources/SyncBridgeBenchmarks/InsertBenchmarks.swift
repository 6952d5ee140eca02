import Foundation
import SyncBridgeMariaDB
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting

/// Inserting `rows` rows of (id, name) on one connection, the ways each facade offers: one
/// awaited statement per row, a pipeline (PostgreSQL) or bulk commands (MariaDB), and the ceiling
/// (PostgreSQL's COPY). Rows per second; each round starts from an empty table and checks the
/// count at its end.
func insertBenchmarks(rounds: Int, rows: Int) async throws -> [Comparison] {
    let ids = Array(1...rows)
    @Sendable func name(_ id: Int) -> String { "name number \(id)" }
    @Sendable func rate(_ start: UInt64) -> Double { Double(rows) / (Double(now() - start) / 1e9) }

    let postgres = try await TemporaryPostgres.start()
    let pg = try await PostgresConnection.connect(postgres.connectionString)
    try await pg.execute("CREATE TABLE bench_insert (id int PRIMARY KEY, name text NOT NULL)")
    @Sendable func pgRound(_ insert: () async throws -> Void) async throws -> Double {
        try await pg.execute("TRUNCATE bench_insert")
        let start = now()
        try await insert()
        let figure = rate(start)
        let count = try await pg.query("SELECT count(*) FROM bench_insert").first?.decode(Int.self, at: 0)
        precondition(count == rows, "inserted \(String(describing: count)) rows of \(rows)")
        return figure
    }
    let postgresComparison = try await compare(
        "PostgreSQL: inserting \(rows) rows on one connection",
        unit: "rows/s",
        rounds: rounds,
        [
            Contender(name: "one INSERT per call") {
                try await pgRound {
                    for id in ids { try await pg.execute("INSERT INTO bench_insert VALUES (\(id), \(name(id)))") }
                }
            },
            Contender(name: "pipeline, batches of 1,000") {
                try await pgRound {
                    for start in stride(from: 0, to: rows, by: 1_000) {
                        let batch = ids[start..<min(start + 1_000, rows)].map {
                            "INSERT INTO bench_insert VALUES (\($0), \(name($0)))" as SQLQuery
                        }
                        for result in try await pg.pipeline(batch) { _ = try result.get() }
                    }
                }
            },
            Contender(name: "COPY FROM STDIN (the ceiling)") {
                try await pgRound {
                    _ = try await pg.copyFrom(
                        "COPY bench_insert (id, name) FROM STDIN",
                        rows: ids.lazy.map { [.int(Int64($0)), .text(name($0))] }
                    )
                }
            },
        ]
    )
    await pg.close()
    await postgres.stop()

    let mariadb = try await TemporaryMariaDB.start()
    var configuration = MariaDBConfiguration(
        host: mariadb.host,
        port: mariadb.port,
        user: mariadb.user,
        password: mariadb.password,
        database: mariadb.database
    )
    let bulk = try await MariaDBConnection.connect(configuration: configuration)
    configuration.bulkExecution = false
    let perRow = try await MariaDBConnection.connect(configuration: configuration)
    try await bulk.execute("CREATE TABLE bench_insert (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL)")
    let values: [[SQLValue]] = ids.map { [.int(Int64($0)), .text(name($0))] }
    @Sendable func mariaRound(_ insert: () async throws -> Void) async throws -> Double {
        try await bulk.execute("TRUNCATE bench_insert")
        let start = now()
        try await insert()
        let figure = rate(start)
        let count = try await bulk.query("SELECT count(*) FROM bench_insert").first?.decode(Int.self, at: 0)
        precondition(count == rows, "inserted \(String(describing: count)) rows of \(rows)")
        return figure
    }
    let mariadbComparison = try await compare(
        "MariaDB: inserting \(rows) rows on one connection",
        unit: "rows/s",
        rounds: rounds,
        [
            Contender(name: "one insert per call") {
                try await mariaRound {
                    for id in ids { try await bulk.insert("INSERT INTO bench_insert VALUES (\(id), \(name(id)))") }
                }
            },
            Contender(name: "executeMany, one execution per row") {
                try await mariaRound {
                    _ = try await perRow.executeMany("INSERT INTO bench_insert VALUES (?, ?)", rows: values)
                }
            },
            Contender(name: "executeMany, bulk commands") {
                try await mariaRound {
                    _ = try await bulk.executeMany("INSERT INTO bench_insert VALUES (?, ?)", rows: values)
                }
            },
        ]
    )
    await bulk.close()
    await perRow.close()
    await mariadb.stop()
    return [postgresComparison, mariadbComparison]
}
