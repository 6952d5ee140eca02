import Foundation
import SyncBridgeMariaDB
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Synchronization

/// Short transactions, the shape of most web requests that write: `withTransaction` around an
/// `UPDATE` of one of 1,000 rows (chosen at random) and a `SELECT` of it, on PostgreSQL and
/// MariaDB, with twice as many tasks as connections. SyncBridge on a thread per connection (the
/// model before the I/O threads) against the default I/O threads; `pgbench -M prepared` runs the
/// same transaction as a reference. After each round the rows' balances must add up to the
/// transactions SyncBridge counted: none lost, none applied twice.
func transactionBenchmarks(rounds: Int, seconds: Double, sizes: [Int]) async throws -> [Comparison] {
    var comparisons: [Comparison] = []
    let ioThreads = SQLIOThreads(count: 2, name: "sb-io-bench")

    let postgres = try await TemporaryPostgres.start()
    let setup = PostgresClient(connectionString: postgres.connectionString, name: "setup")
    try await setup.execute("CREATE TABLE bench_accounts (id int PRIMARY KEY, balance bigint NOT NULL)")
    try await setup.execute("INSERT INTO bench_accounts SELECT i, 0 FROM generate_series(1, 1000) AS i")
    let pgbench = findPgbench()
    for size in sizes {
        func measure(_ threads: SQLIOThreads, _ name: String) async throws -> Double {
            let client = PostgresClient(
                connectionString: postgres.connectionString,
                configuration: .open(size),
                ioThreads: threads,
                name: "bench"
            )
            return try await transactionsPerSecond(name, on: client, connections: size, seconds: seconds, check: setup)
        }
        var contenders = [
            Contender(name: "SyncBridge, a thread per connection") {
                try await measure(.off, "thread per connection, \(size)")
            },
            Contender(name: "SyncBridge, 2 I/O threads (the default)") {
                try await measure(ioThreads, "2 I/O threads, \(size)")
            },
        ]
        if let pgbench {
            contenders.append(
                Contender(name: "pgbench -M prepared -j 2") {
                    try await runPgbench(
                        pgbench,
                        server: postgres,
                        script: """
                            \\set id random(1, 1000)
                            BEGIN;
                            UPDATE bench_accounts SET balance = balance + 1 WHERE id = :id;
                            SELECT balance FROM bench_accounts WHERE id = :id;
                            END;

                            """,
                        clients: size,
                        seconds: seconds,
                        protocol: "prepared"
                    )
                }
            )
        }
        comparisons.append(
            try await compare(
                "PostgreSQL transactions (UPDATE and SELECT of one row), \(size) connections, \(2 * size) tasks: transactions per second (\(seconds) s per round)",
                unit: "transactions/s",
                rounds: rounds,
                contenders
            )
        )
    }
    await setup.shutdown()
    await postgres.stop()

    let mariadb = try await TemporaryMariaDB.start()
    let configuration = MariaDBConfiguration(mariadb)
    let mariadbSetup = MariaDBClient(configuration: configuration, name: "setup")
    try await mariadbSetup.execute(
        "CREATE TABLE bench_accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB"
    )
    try await mariadbSetup.execute("INSERT INTO bench_accounts SELECT seq, 0 FROM seq_1_to_1000")
    for size in sizes {
        func measure(_ threads: SQLIOThreads, _ name: String) async throws -> Double {
            let client = MariaDBClient(
                configuration: configuration,
                poolConfiguration: .open(size),
                ioThreads: threads,
                name: "bench"
            )
            return try await transactionsPerSecond(
                name,
                on: client,
                connections: size,
                seconds: seconds,
                check: mariadbSetup
            )
        }
        comparisons.append(
            try await compare(
                "MariaDB transactions (UPDATE and SELECT of one row), \(size) connections, \(2 * size) tasks: transactions per second (\(seconds) s per round)",
                unit: "transactions/s",
                rounds: rounds,
                [
                    Contender(name: "SyncBridge, a thread per connection") {
                        try await measure(.off, "thread per connection, \(size)")
                    },
                    Contender(name: "SyncBridge, 2 I/O threads (the default)") {
                        try await measure(ioThreads, "2 I/O threads, \(size)")
                    },
                ]
            )
        )
    }
    await mariadbSetup.shutdown()
    await mariadb.stop()
    return comparisons
}

/// Transactions per second of `client` once its `connections` connections are open, with two
/// tasks per connection; the client is shut down afterwards. `check` (another client of the same
/// database) verifies that the balances grew by exactly the transactions counted.
private func transactionsPerSecond<Session: SQLSession>(
    _ name: String,
    on client: SQLClient<Session>,
    connections: Int,
    seconds: Double,
    check: SQLClient<Session>
) async throws -> Double {
    // PostgreSQL's SUM of bigints is numeric, MariaDB's is DECIMAL: both cast to a 64-bit integer.
    let total: SQLQuery =
        Session.self == PostgresSession.self
        ? "SELECT SUM(balance)::bigint FROM bench_accounts"
        : "SELECT CAST(SUM(balance) AS SIGNED) FROM bench_accounts"
    let run = Task { try await client.run() }
    while client.pool.statistics.idle + client.pool.statistics.leased < connections {
        try await Task.sleep(for: .milliseconds(20))
    }
    let before = try await check.query(total)[0].decode(Int.self, at: 0)
    let counted = Mutex(0)
    let rate = try await queriesPerSecond(name, tasks: 2 * connections, seconds: seconds) {
        let id = Int.random(in: 1...1000)
        try await client.withTransaction { connection in
            try await connection.execute("UPDATE bench_accounts SET balance = balance + 1 WHERE id = \(id)")
            let rows = try await connection.query("SELECT balance FROM bench_accounts WHERE id = \(id)")
            precondition(rows.count == 1, "the updated row was not read back")
        }
        counted.withLock { $0 += 1 }
    }
    let after = try await check.query(total)[0].decode(Int.self, at: 0)
    precondition(
        after - before == counted.withLock { $0 },
        "the balances grew by \(after - before), but \(counted.withLock { $0 }) transactions committed"
    )
    run.cancel()
    _ = await run.result
    await client.shutdown()
    return rate
}
