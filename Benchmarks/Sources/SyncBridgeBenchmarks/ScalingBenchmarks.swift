import Foundation
import SyncBridgeMariaDB
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting

/// PostgreSQL `SELECT 1` (or the 100-row select) at growing pool sizes, twice as many tasks as
/// connections (or `--tasks-per-connection N` times as many): SyncBridge with a thread per connection, SyncBridge with connections served by
/// I/O threads (two unless `--io-threads N` says otherwise), and `pgbench -M prepared -j 2` with as many connections.
///
/// Each round opens its client's connections before measuring and closes them after, so that
/// only one contender's connections exist at a time (the server allows 300).
func scalingBenchmarks(
    rounds: Int,
    seconds: Double,
    sizes: [Int],
    workload: PostgresWorkload,
    ioThreadCount: Int,
    tasksPerConnection: Int
) async throws -> [Comparison] {
    let server = try await TemporaryPostgres.start()
    let setup = SyncBridgePostgres.PostgresClient(connectionString: server.connectionString, name: "setup")
    try await setup.execute("CREATE TABLE bench_rows (id int PRIMARY KEY, name text NOT NULL)")
    try await setup.execute("INSERT INTO bench_rows SELECT i, 'name number ' || i FROM generate_series(1, 100) AS i")
    await setup.shutdown()
    let ioThreads = SQLIOThreads(count: ioThreadCount, name: "sb-io-bench")
    let pgbench = findPgbench()
    let expectedRows = workload == .selectOne ? 1 : 100

    let sql: SQLQuery = workload == .selectOne ? "SELECT 1" : "SELECT id, name FROM bench_rows"

    func measure(
        connections: Int,
        ioThreads: SQLIOThreads,
        name: String,
        tasksOnIOThreads: Bool = false
    ) async throws -> Double {
        let client = SyncBridgePostgres.PostgresClient(
            connectionString: server.connectionString,
            configuration: .open(connections),
            ioThreads: ioThreads,
            name: "bench"
        )
        return try await queriesPerSecond(
            name,
            on: client,
            connections: connections,
            tasks: tasksPerConnection * connections,
            seconds: seconds,
            sql,
            rows: expectedRows,
            executors: tasksOnIOThreads ? ioThreads.taskExecutors : []
        )
    }

    var comparisons: [Comparison] = []
    for size in sizes {
        var contenders = [
            Contender(name: "SyncBridge, a thread per connection") {
                try await measure(connections: size, ioThreads: .off, name: "thread per connection, \(size)")
            },
            Contender(name: "SyncBridge, \(ioThreadCount) I/O threads") {
                try await measure(
                    connections: size,
                    ioThreads: ioThreads,
                    name: "\(ioThreadCount) I/O threads, \(size)"
                )
            },
            Contender(name: "SyncBridge, \(ioThreadCount) I/O threads, tasks on them") {
                try await measure(
                    connections: size,
                    ioThreads: ioThreads,
                    name: "\(ioThreadCount) I/O threads, tasks on them, \(size)",
                    tasksOnIOThreads: true
                )
            },
        ]
        if let pgbench {
            contenders.append(
                Contender(name: "pgbench -M prepared -j 2") {
                    try await runPgbench(
                        pgbench,
                        server: server,
                        script: workload.pgbenchScript,
                        clients: size,
                        seconds: seconds,
                        protocol: "prepared"
                    )
                }
            )
        }
        comparisons.append(
            try await compare(
                "PostgreSQL \(workload.rawValue), \(size) connections, \(tasksPerConnection * size) tasks: queries per second (\(seconds) s per round)",
                unit: "queries/s",
                rounds: rounds,
                contenders
            )
        )
    }
    await server.stop()
    return comparisons
}

/// MariaDB `SELECT 1` (or the 100-row select) at growing pool sizes, as
/// ``scalingBenchmarks(rounds:seconds:sizes:workload:ioThreadCount:tasksPerConnection:)`` measures
/// PostgreSQL: SyncBridge with a thread per connection, SyncBridge with connections served by I/O
/// threads, and `mysqlslap` with as many clients, all over TCP on loopback.
func mariadbScalingBenchmarks(
    rounds: Int,
    seconds: Double,
    sizes: [Int],
    workload: MariaDBWorkload,
    ioThreadCount: Int,
    tasksPerConnection: Int
) async throws -> [Comparison] {
    let server = try await TemporaryMariaDB.start()
    let configuration = MariaDBConfiguration(server)
    let setup = MariaDBClient(configuration: configuration, name: "setup")
    try await setup.execute("CREATE TABLE bench_rows (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL)")
    try await setup.execute("INSERT INTO bench_rows SELECT seq, CONCAT('name number ', seq) FROM seq_1_to_100")
    await setup.shutdown()
    let ioThreads = SQLIOThreads(count: ioThreadCount, name: "sb-io-bench")

    func measure(
        connections: Int,
        ioThreads: SQLIOThreads,
        name: String,
        tasksOnIOThreads: Bool = false
    ) async throws -> Double {
        let client = MariaDBClient(
            configuration: configuration,
            poolConfiguration: .open(connections),
            ioThreads: ioThreads,
            name: "bench"
        )
        return try await queriesPerSecond(
            name,
            on: client,
            connections: connections,
            tasks: tasksPerConnection * connections,
            seconds: seconds,
            SQLQuery(unsafeSQL: workload.sql),
            rows: workload.rows,
            executors: tasksOnIOThreads ? ioThreads.taskExecutors : []
        )
    }

    var comparisons: [Comparison] = []
    for size in sizes {
        let contenders = [
            Contender(name: "SyncBridge, a thread per connection") {
                try await measure(connections: size, ioThreads: .off, name: "thread per connection, \(size)")
            },
            Contender(name: "SyncBridge, \(ioThreadCount) I/O threads") {
                try await measure(
                    connections: size,
                    ioThreads: ioThreads,
                    name: "\(ioThreadCount) I/O threads, \(size)"
                )
            },
            Contender(name: "SyncBridge, \(ioThreadCount) I/O threads, tasks on them") {
                try await measure(
                    connections: size,
                    ioThreads: ioThreads,
                    name: "\(ioThreadCount) I/O threads, tasks on them, \(size)",
                    tasksOnIOThreads: true
                )
            },
            Contender(name: "mysqlslap") {
                try await runMysqlslap(server: server, sql: workload.sql, concurrency: size, seconds: seconds)
            },
        ]
        comparisons.append(
            try await compare(
                "MariaDB \(workload.rawValue), \(size) connections, \(tasksPerConnection * size) tasks: queries per second (\(seconds) s per round)",
                unit: "queries/s",
                rounds: rounds,
                contenders
            )
        )
    }
    await server.stop()
    return comparisons
}

extension ConnectionPoolConfiguration {
    /// A pool that opens `connections` connections at once and keeps them.
    static func open(_ connections: Int) -> ConnectionPoolConfiguration {
        var configuration = ConnectionPoolConfiguration()
        configuration.minimumConnections = connections
        configuration.maximumConnections = connections
        configuration.acquireTimeout = .seconds(120)
        return configuration
    }
}

extension MariaDBConfiguration {
    /// TCP to `server`, as its user.
    init(_ server: TemporaryMariaDB) {
        self.init(
            host: server.host,
            port: server.port,
            user: server.user,
            password: server.password,
            database: server.database
        )
    }
}

/// Statements per second of `client` once its `connections` connections are open: `tasks` tasks
/// run `sql` (which returns `rows` rows) for `seconds`; the client is shut down afterwards.
func queriesPerSecond<Session: SQLSession>(
    _ name: String,
    on client: SQLClient<Session>,
    connections: Int,
    tasks: Int,
    seconds: Double,
    _ sql: SQLQuery,
    rows: Int,
    executors: [any TaskExecutor] = []
) async throws -> Double {
    let run = Task { try await client.run() }
    // Every connection open before measuring.
    while client.pool.statistics.idle + client.pool.statistics.leased < connections {
        try await Task.sleep(for: .milliseconds(20))
    }
    let rate = try await queriesPerSecond(name, tasks: tasks, seconds: seconds, executors: executors) {
        let result = try await client.query(sql)
        precondition(result.count == rows)
    }
    run.cancel()
    _ = await run.result
    await client.shutdown()
    return rate
}
