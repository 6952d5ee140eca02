import CMariaDB
import Foundation
import SyncBridgeMariaDB
import SyncBridgeSQL
import SyncBridgeTesting

/// The two statements measured.
enum MariaDBWorkload: String, CaseIterable {
    case selectOne = "SELECT 1"
    case hundredRows = "100-row select"

    var sql: String {
        switch self {
        case .selectOne: "SELECT 1"
        case .hundredRows: "SELECT id, name FROM bench_rows"
        }
    }

    var rows: Int { self == .selectOne ? 1 : 100 }
}

/// SyncBridge's client, mysqlslap, raw Connector/C and Python's asyncio clients against one
/// throwaway server, all over TCP on loopback.
func mariadbBenchmarks(rounds: Int, seconds: Double) async throws -> [Comparison] {
    let server = try await TemporaryMariaDB.start()
    let configuration = MariaDBConfiguration(server)
    var poolConfiguration = ConnectionPoolConfiguration()
    poolConfiguration.minimumConnections = 8
    poolConfiguration.maximumConnections = 8
    // A thread per connection; the same pool on I/O threads follows.
    let ours = MariaDBClient(
        configuration: configuration,
        poolConfiguration: poolConfiguration,
        ioThreads: .off,
        name: "bench"
    )
    let oursRun = Task { try await ours.run() }
    // The same pool, its connections served by two I/O threads.
    let ioThreads = SQLIOThreads(count: 2, name: "sb-io-bench")
    let oursOnIOThreads = MariaDBClient(
        configuration: configuration,
        poolConfiguration: poolConfiguration,
        ioThreads: ioThreads,
        name: "bench-io"
    )
    let oursOnIOThreadsRun = Task { try await oursOnIOThreads.run() }

    try await ours.execute("CREATE TABLE bench_rows (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL)")
    try await ours.execute("INSERT INTO bench_rows SELECT seq, CONCAT('name number ', seq) FROM seq_1_to_100")
    // Let the pools open their 8 connections before measuring.
    try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<8 {
            group.addTask { try await ours.query("SELECT SLEEP(0.05)") }
            group.addTask { try await oursOnIOThreads.query("SELECT SLEEP(0.05)") }
        }
        try await group.waitForAll()
    }

    var pythonDrivers: [String] = []
    for driver in ["asyncmy", "aiomysql"] where await pythonModuleExists(driver) { pythonDrivers.append(driver) }
    var comparisons: [Comparison] = []
    for workload in MariaDBWorkload.allCases {
        let sql = workload.sql
        func query(_ client: MariaDBClient) -> @Sendable () async throws -> Void {
            switch workload {
            case .selectOne:
                return {
                    let rows = try await client.query("SELECT 1")
                    let value = try rows[0].decode(Int.self, at: 0)
                    precondition(value == 1)
                }
            case .hundredRows:
                return {
                    var count = 0
                    for row in try await client.query("SELECT id, name FROM bench_rows") {
                        let (_, _) = try row.decode((Int, String).self)
                        count += 1
                    }
                    precondition(count == 100)
                }
            }
        }
        var contenders: [Contender] = []
        for tasks in [8, 64] {
            contenders.append(
                Contender(name: "SyncBridge MariaDBClient, a thread per connection, \(tasks) tasks") {
                    try await queriesPerSecond(
                        "SyncBridge, \(tasks) tasks",
                        tasks: tasks,
                        seconds: seconds,
                        query(ours)
                    )
                }
            )
            contenders.append(
                Contender(name: "SyncBridge MariaDBClient on 2 I/O threads, \(tasks) tasks") {
                    try await queriesPerSecond(
                        "SyncBridge on I/O threads, \(tasks) tasks",
                        tasks: tasks,
                        seconds: seconds,
                        query(oursOnIOThreads)
                    )
                }
            )
            contenders.append(
                Contender(name: "SyncBridge MariaDBClient on 2 I/O threads, tasks on them, \(tasks) tasks") {
                    try await queriesPerSecond(
                        "SyncBridge on I/O threads, tasks on them, \(tasks) tasks",
                        tasks: tasks,
                        seconds: seconds,
                        executors: ioThreads.taskExecutors,
                        query(oursOnIOThreads)
                    )
                }
            )
        }
        contenders.append(
            Contender(name: "mysqlslap --concurrency=8") {
                try await runMysqlslap(server: server, sql: sql, concurrency: 8, seconds: seconds)
            }
        )
        contenders.append(
            Contender(name: "raw Connector/C, 1 connection, 1 thread (floor of one connection)") {
                await onDedicatedThread { rawConnectorC(server, sql: sql, seconds: seconds) }
            }
        )
        for driver in pythonDrivers {
            for tasks in [8, 64] {
                contenders.append(
                    Contender(name: "Python \(driver) (asyncio), 8 connections, \(tasks) tasks") {
                        try await runPython(
                            driver,
                            server: server,
                            sql: sql,
                            rows: workload.rows,
                            tasks: tasks,
                            seconds: seconds
                        )
                    }
                )
            }
        }
        comparisons.append(
            try await compare(
                "MariaDB \(workload.rawValue): queries per second (8 connections; \(seconds) s per round)",
                unit: "queries/s",
                rounds: rounds,
                contenders
            )
        )
    }
    oursRun.cancel()
    _ = await oursRun.result
    oursOnIOThreadsRun.cancel()
    _ = await oursOnIOThreadsRun.result
    await oursOnIOThreads.shutdown()
    ioThreads.shutdown()
    // Stopped here, before the process ends (a task started from a `defer` would never run).
    await server.stop()
    return comparisons
}

/// Runs mysqlslap for about `seconds` (sized from a calibration run) and returns queries/s: the
/// total number of queries over mysqlslap's own average run time.
func runMysqlslap(server: TemporaryMariaDB, sql: String, concurrency: Int, seconds: Double) async throws -> Double {
    let calibration = try await runMysqlslap(server: server, sql: sql, concurrency: concurrency, queries: 4_000)
    let queries = max(4_000, Int(calibration * seconds))
    return try await runMysqlslap(server: server, sql: sql, concurrency: concurrency, queries: queries)
}

func runMysqlslap(server: TemporaryMariaDB, sql: String, concurrency: Int, queries: Int) async throws -> Double {
    let (status, text) = try await runProgram(
        "/usr/bin/mysqlslap",
        [
            "--no-defaults", "-h", server.host, "-P", "\(server.port)", "-u", server.user,
            // --create-schema: without it mysqlslap prints plausible numbers for runs that failed.
            "--create-schema=\(server.database)", "--concurrency=\(concurrency)", "--iterations=1",
            "--number-of-queries=\(queries)", "--query=\(sql)",
        ],
        environment: ["MYSQL_PWD": server.password, "PATH": "/usr/bin:/bin"]
    )
    let prefix = "Average number of seconds to run all queries: "
    guard status == 0,
        let line = text.split(separator: "\n").first(where: { $0.contains(prefix) }),
        let value = Double(line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces).prefix { $0 != " " }),
        value > 0
    else {
        throw BenchmarkError("mysqlslap failed: \(text)")
    }
    return Double(queries) / value
}

/// Runs the Python asyncio peer (Benchmarks/Peers/mariadb_asyncio.py) and returns its queries/s.
func runPython(
    _ driver: String,
    server: TemporaryMariaDB,
    sql: String,
    rows: Int,
    tasks: Int,
    seconds: Double
) async throws -> Double {
    let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Peers/mariadb_asyncio.py").path
    let (status, output) = try await runProgram(
        "/usr/bin/env",
        [
            "python3", script, driver, server.host, "\(server.port)", server.user, server.password, server.database,
            "\(tasks)", "\(seconds)", sql, "\(rows)",
        ]
    )
    let text = output.trimmingCharacters(in: .whitespacesAndNewlines)
    guard status == 0, let value = Double(text.split(separator: "\n").last ?? "") else {
        throw BenchmarkError("python \(driver) failed: \(text)")
    }
    return value
}

func pythonModuleExists(_ module: String) async -> Bool {
    (try? await runProgram("/usr/bin/env", ["python3", "-c", "import \(module)"]))?.status == 0
}

/// Synchronous Connector/C on one thread (text protocol, every value read): the most one
/// connection can do with no bridging at all.
func rawConnectorC(_ server: TemporaryMariaDB, sql: String, seconds: Double) -> Double {
    guard let mysql = mysql_init(nil) else { return .nan }
    defer { mysql_close(mysql) }
    guard
        mysql_real_connect(
            mysql,
            server.host,
            server.user,
            server.password,
            server.database,
            UInt32(server.port),
            nil,
            0
        ) != nil
    else {
        return .nan
    }
    let deadline = now() + UInt64(seconds * 1e9)
    let start = now()
    var count = 0
    while now() < deadline {
        precondition(mysql_real_query(mysql, sql, UInt(sql.utf8.count)) == 0)
        let result = mysql_store_result(mysql)!
        let fields = Int(mysql_num_fields(result))
        while let row = mysql_fetch_row(result) {
            for column in 0..<fields { _ = String(cString: row[column]!) }
        }
        mysql_free_result(result)
        count += 1
    }
    return Double(count) / (Double(now() - start) / 1e9)
}
