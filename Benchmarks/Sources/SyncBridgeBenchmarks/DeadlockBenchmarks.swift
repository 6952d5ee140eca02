import Foundation
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting

/// The deadlock detector's cost: the core hop, an uncontended AsyncMutex, and both database
/// clients under load, each with the detector off and on (report mode), in paired rounds.
func deadlockBenchmarks(rounds: Int, seconds: Double) async throws -> [Comparison] {
    var comparisons: [Comparison] = []
    func withDetector<T>(_ mode: String, _ body: () async throws -> T) async rethrows -> T {
        guard mode == "on" else { return try await body() }
        let detector = DeadlockDetector(configuration: .init(mode: .report))
        detector.start()
        let result = try await body()
        await detector.shutdown()
        return result
    }

    let pool = BlockingPool(name: "bench-dl-pool", threadCount: 1)
    let counter = Counter()
    let hops = 100_000
    comparisons.append(
        try await compare(
            "Deadlock detector on the core hop (BlockingPool.run, \(hops) per round)",
            unit: "ns per hop",
            rounds: rounds,
            ["off", "on"].map { mode in
                Contender(name: "hop, detector \(mode)") {
                    try await withDetector(mode) {
                        try await Task.detached {
                            let start = now()
                            for _ in 0..<hops { try await pool.run { counter.value &+= 1 } }
                            return Double(now() - start) / Double(hops)
                        }.value
                    }
                }
            }
        )
    )
    await pool.shutdownGracefully()

    let mutex = AsyncMutex(0, lockClass: "bench")
    let locks = 200_000
    comparisons.append(
        try await compare(
            "Deadlock detector on an uncontended AsyncMutex (\(locks) per round)",
            unit: "ns per lock",
            rounds: rounds,
            ["off", "on"].map { mode in
                Contender(name: "AsyncMutex, detector \(mode)") {
                    try await withDetector(mode) {
                        let start = now()
                        for _ in 0..<locks { try await mutex.withLock { $0 &+= 1 } }
                        return Double(now() - start) / Double(locks)
                    }
                }
            }
        )
    )

    var poolConfiguration = ConnectionPoolConfiguration()
    poolConfiguration.minimumConnections = 8
    poolConfiguration.maximumConnections = 8

    let postgres = try await TemporaryPostgres.start()
    let pg = PostgresClient(
        connectionString: postgres.connectionString,
        configuration: poolConfiguration,
        name: "bench-dl"
    )
    let pgRun = Task { try await pg.run() }
    var pgContenders: [Contender] = []
    for tasks in [8, 64] {
        for mode in ["off", "on"] {
            pgContenders.append(
                Contender(name: "PostgreSQL SELECT 1, \(tasks) tasks, detector \(mode)") {
                    try await withDetector(mode) {
                        try await queriesPerSecond(tasks: tasks, seconds: seconds) {
                            _ = try await pg.query("SELECT 1")
                        }
                    }
                }
            )
        }
    }
    let pgComparison = try await compare(
        "Deadlock detector on the PostgreSQL client (8 connections)",
        unit: "queries/s",
        rounds: rounds,
        pgContenders
    )
    comparisons.append(pgComparison)
    pgRun.cancel()
    await pg.shutdown()
    await postgres.stop()

    let mariadb = try await TemporaryMariaDB.start()
    let maria = MariaDBClient(
        configuration: MariaDBConfiguration(
            host: mariadb.host,
            port: mariadb.port,
            user: mariadb.user,
            password: mariadb.password,
            database: mariadb.database
        ),
        poolConfiguration: poolConfiguration,
        name: "bench-dl"
    )
    let mariaRun = Task { try await maria.run() }
    var mariaContenders: [Contender] = []
    for tasks in [8, 64] {
        for mode in ["off", "on"] {
            mariaContenders.append(
                Contender(name: "MariaDB SELECT 1, \(tasks) tasks, detector \(mode)") {
                    try await withDetector(mode) {
                        try await queriesPerSecond(tasks: tasks, seconds: seconds) {
                            _ = try await maria.query("SELECT 1")
                        }
                    }
                }
            )
        }
    }
    comparisons.append(
        try await compare(
            "Deadlock detector on the MariaDB client (8 connections)",
            unit: "queries/s",
            rounds: rounds,
            mariaContenders
        )
    )
    mariaRun.cancel()
    await maria.shutdown()
    await mariadb.stop()
    return comparisons
}
