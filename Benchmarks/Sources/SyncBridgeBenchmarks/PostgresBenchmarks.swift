import CLibPQBench
import Foundation
import Logging
import PostgresNIO
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Tracing

/// The two statements measured.
enum PostgresWorkload: String, CaseIterable {
    case selectOne = "SELECT 1"
    case hundredRows = "100-row select"

    var sql: String {
        switch self {
        case .selectOne: "SELECT 1"
        case .hundredRows: "SELECT id, name FROM bench_rows"
        }
    }

    var pgbenchScript: String { sql + ";\n" }
}

/// Runs `body` repeatedly in `tasks` concurrent tasks for `seconds`; returns completions per second.
/// Prints the process's CPU per call on standard error, under `name` when given.
func queriesPerSecond(
    _ name: String? = nil,
    tasks: Int,
    seconds: Double,
    executors: [any TaskExecutor] = [],
    _ body: @escaping @Sendable () async throws -> Void
) async throws -> Double {
    let deadline = now() + UInt64(seconds * 1e9)
    let start = now()
    var usageBefore = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usageBefore)
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
        for index in 0..<tasks {
            // Spread over `executors` in turn when there are some (tasks that prefer the I/O
            // threads), on the cooperative pool otherwise.
            @Sendable func loop() async throws -> Int {
                var count = 0
                while now() < deadline {
                    try await body()
                    count += 1
                }
                return count
            }
            if executors.isEmpty {
                group.addTask { try await loop() }
            } else {
                group.addTask(executorPreference: executors[index % executors.count]) { try await loop() }
            }
        }
        return try await group.reduce(0, +)
    }
    var usageAfter = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usageAfter)
    // The whole process's CPU per completed call (the contender's threads and everything else
    // in this process): less sensitive to a noisy machine than the rate, and where a change in
    // the client's own cost shows first. On standard error, beside the round's progress.
    func microseconds(_ time: timeval) -> Double { Double(time.tv_sec) * 1e6 + Double(time.tv_usec) }
    let calls = Double(max(total, 1))
    let user = (microseconds(usageAfter.ru_utime) - microseconds(usageBefore.ru_utime)) / calls
    let system = (microseconds(usageAfter.ru_stime) - microseconds(usageBefore.ru_stime)) / calls
    let switches = Double(usageAfter.ru_nvcsw - usageBefore.ru_nvcsw) / calls
    FileHandle.standardError.write(
        Data(
            "\n\(name ?? "\(tasks) tasks"): \(format(user)) µs user + \(format(system)) µs system CPU and \(String(format: "%.2f", switches)) voluntary context switches per call\n"
                .utf8
        )
    )
    return Double(total) / (Double(now() - start) / 1e9)
}

/// `SELECT 1` as a PostgresNIO prepared statement (its strongest form: parsed once per connection).
struct NIOSelectOne: PostgresPreparedStatement {
    static let sql = "SELECT 1"
    typealias Row = Int
    func makeBindings() -> PostgresBindings { PostgresBindings() }
    func decodeRow(_ row: PostgresNIO.PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// The 100-row select as a PostgresNIO prepared statement.
struct NIOHundredRows: PostgresPreparedStatement {
    static let sql = "SELECT id, name FROM bench_rows"
    typealias Row = (Int, String)
    func makeBindings() -> PostgresBindings { PostgresBindings() }
    func decodeRow(_ row: PostgresNIO.PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// PostgresNIO's client with 8 connections to `server` through `port` (the server's, or a
/// proxy's), logging nothing.
func makeNIOClient(_ server: TemporaryPostgres, port: Int) -> PostgresNIO.PostgresClient {
    var configuration = PostgresNIO.PostgresClient.Configuration(
        host: "127.0.0.1",
        port: port,
        username: server.user,
        password: server.password,
        database: server.database,
        tls: .disable
    )
    configuration.options.minimumConnections = 8
    configuration.options.maximumConnections = 8
    return PostgresNIO.PostgresClient(
        configuration: configuration,
        backgroundLogger: Logger(label: "nio") { _ in SwiftLogNoOpLogHandler() }
    )
}

/// SyncBridge's pipelines of 100 `SELECT 1`s from 8 tasks on `client`, with a sync point per
/// statement; statements per second.
func pipelinedSelectOnes(_ client: SyncBridgePostgres.PostgresClient, seconds: Double) -> Contender {
    let batch: [SQLQuery] = Array(repeating: "SELECT 1", count: 100)
    return Contender(name: "SyncBridge pipeline of 100, 8 tasks") {
        try await queriesPerSecond(tasks: 8, seconds: seconds) {
            for result in try await client.pipeline(batch) {
                let value = try result.get().rows[0].decode(Int.self, at: 0)
                precondition(value == 1)
            }
        } * 100
    }
}

/// SyncBridge's atomic pipelines of 100 `SELECT 1`s (one sync point each, as pgbench's
/// `\startpipeline` script) from 8 tasks on `client`; statements per second.
func atomicPipelinedSelectOnes(_ client: SyncBridgePostgres.PostgresClient, seconds: Double) -> Contender {
    let batch: [SQLQuery] = Array(repeating: "SELECT 1", count: 100)
    return Contender(name: "SyncBridge atomic pipeline of 100, 8 tasks") {
        try await queriesPerSecond(tasks: 8, seconds: seconds) {
            for outcome in try await client.atomicPipeline(batch) {
                let value = try outcome.rows[0].decode(Int.self, at: 0)
                precondition(value == 1)
            }
        } * 100
    }
}

/// SyncBridge's client, PostgresNIO's client, pgbench and raw libpq against one throwaway server.
func postgresBenchmarks(rounds: Int, seconds: Double) async throws -> [Comparison] {
    let server = try await TemporaryPostgres.start()

    var configuration = ConnectionPoolConfiguration()
    configuration.minimumConnections = 8
    configuration.maximumConnections = 8
    // A thread per connection; the same pool on I/O threads follows.
    let ours = SyncBridgePostgres.PostgresClient(
        connectionString: server.connectionString,
        configuration: configuration,
        ioThreads: .off,
        name: "bench"
    )
    let oursRun = Task { try await ours.run() }
    // The same pool, its connections served by two I/O threads (which pipeline the statements
    // that queue on a connection).
    let ioThreads = SQLIOThreads(count: 2, name: "sb-io-bench")
    let oursOnIOThreads = SyncBridgePostgres.PostgresClient(
        connectionString: server.connectionString,
        configuration: configuration,
        ioThreads: ioThreads,
        name: "bench-io"
    )
    let oursOnIOThreadsRun = Task { try await oursOnIOThreads.run() }

    let nio = makeNIOClient(server, port: server.port)
    let nioRun = Task { await nio.run() }

    try await ours.execute("CREATE TABLE bench_rows (id int PRIMARY KEY, name text NOT NULL)")
    try await ours.execute("INSERT INTO bench_rows SELECT i, 'name number ' || i FROM generate_series(1, 100) AS i")

    let pgbench = findPgbench()
    var comparisons: [Comparison] = []
    for workload in PostgresWorkload.allCases {
        let sql = workload.sql
        let oursQuery: @Sendable () async throws -> Void
        let oursOnIOThreadsQuery: @Sendable () async throws -> Void
        let nioQuery: @Sendable () async throws -> Void
        let nioPrepared: @Sendable () async throws -> Void
        switch workload {
        case .selectOne:
            nioPrepared = {
                for try await value in try await nio.execute(NIOSelectOne()) { precondition(value == 1) }
            }
            @Sendable func selectOne(_ client: SyncBridgePostgres.PostgresClient) async throws {
                let rows = try await client.query("SELECT 1")
                let value = try rows[0].decode(Int.self, at: 0)
                precondition(value == 1)
            }
            oursQuery = { try await selectOne(ours) }
            oursOnIOThreadsQuery = { try await selectOne(oursOnIOThreads) }
            nioQuery = {
                for try await value in try await nio.query("SELECT 1").decode(Int.self) { precondition(value == 1) }
            }
        case .hundredRows:
            nioPrepared = {
                var count = 0
                for try await (_, _) in try await nio.execute(NIOHundredRows()) { count += 1 }
                precondition(count == 100)
            }
            @Sendable func hundredRows(_ client: SyncBridgePostgres.PostgresClient) async throws {
                var count = 0
                for row in try await client.query("SELECT id, name FROM bench_rows") {
                    let (_, _) = try row.decode((Int, String).self)
                    count += 1
                }
                precondition(count == 100)
            }
            oursQuery = { try await hundredRows(ours) }
            oursOnIOThreadsQuery = { try await hundredRows(oursOnIOThreads) }
            nioQuery = {
                var count = 0
                for try await (_, _) in try await nio.query("SELECT id, name FROM bench_rows").decode(
                    (Int, String).self
                ) {
                    count += 1
                }
                precondition(count == 100)
            }
        }
        var contenders: [Contender] = []
        for tasks in [8, 64] {
            contenders.append(
                Contender(name: "SyncBridge PostgresClient, a thread per connection, \(tasks) tasks") {
                    try await queriesPerSecond(
                        "SyncBridge, a thread per connection, \(tasks) tasks",
                        tasks: tasks,
                        seconds: seconds,
                        oursQuery
                    )
                }
            )
            contenders.append(
                Contender(name: "SyncBridge PostgresClient on 2 I/O threads, \(tasks) tasks") {
                    try await queriesPerSecond(
                        "SyncBridge on I/O threads, \(tasks) tasks",
                        tasks: tasks,
                        seconds: seconds,
                        oursOnIOThreadsQuery
                    )
                }
            )
            contenders.append(
                Contender(name: "SyncBridge PostgresClient on 2 I/O threads, tasks on them, \(tasks) tasks") {
                    try await queriesPerSecond(
                        "SyncBridge on I/O threads, tasks on them, \(tasks) tasks",
                        tasks: tasks,
                        seconds: seconds,
                        executors: ioThreads.taskExecutors,
                        oursOnIOThreadsQuery
                    )
                }
            )
            // A request's context with no tracer bootstrapped: each statement carries it to the
            // connection's thread (the cost of tracing's plumbing when nothing records).
            contenders.append(
                Contender(
                    name: "SyncBridge PostgresClient in a ServiceContext, a thread per connection, \(tasks) tasks"
                ) {
                    try await ServiceContext.withValue(.topLevel) {
                        try await queriesPerSecond(
                            "SyncBridge in a context, a thread per connection, \(tasks) tasks",
                            tasks: tasks,
                            seconds: seconds,
                            oursQuery
                        )
                    }
                }
            )
            contenders.append(
                Contender(name: "PostgresNIO PostgresClient, \(tasks) tasks") {
                    try await queriesPerSecond("PostgresNIO, \(tasks) tasks", tasks: tasks, seconds: seconds, nioQuery)
                }
            )
            contenders.append(
                Contender(name: "PostgresNIO prepared statement, \(tasks) tasks") {
                    try await queriesPerSecond(
                        "PostgresNIO prepared, \(tasks) tasks",
                        tasks: tasks,
                        seconds: seconds,
                        nioPrepared
                    )
                }
            )
        }
        if workload == .selectOne {
            contenders.append(pipelinedSelectOnes(ours, seconds: seconds))
            contenders.append(atomicPipelinedSelectOnes(ours, seconds: seconds))
        }
        if let pgbench {
            contenders.append(
                Contender(name: "pgbench -c 8 -j 2") {
                    try await runPgbench(
                        pgbench,
                        server: server,
                        script: workload.pgbenchScript,
                        clients: 8,
                        seconds: seconds
                    )
                }
            )
            contenders.append(
                Contender(name: "pgbench -M prepared -c 8 -j 2") {
                    try await runPgbench(
                        pgbench,
                        server: server,
                        script: workload.pgbenchScript,
                        clients: 8,
                        seconds: seconds,
                        protocol: "prepared"
                    )
                }
            )
            if workload == .selectOne {
                let script =
                    "\\startpipeline\n" + String(repeating: workload.pgbenchScript, count: 100) + "\\endpipeline\n"
                contenders.append(
                    Contender(name: "pgbench pipeline of 100 -M prepared -c 8 -j 2") {
                        try await runPgbench(
                            pgbench,
                            server: server,
                            script: script,
                            clients: 8,
                            seconds: seconds,
                            protocol: "prepared"
                        ) * 100
                    }
                )
            }
        }
        contenders.append(
            Contender(name: "raw libpq, 1 connection, 1 thread (floor of one connection)") {
                await onDedicatedThread { rawLibpq(server.connectionString, sql: sql, seconds: seconds) }
            }
        )
        comparisons.append(
            try await compare(
                "PostgreSQL \(workload.rawValue): queries per second (8 connections; \(seconds) s per round)",
                unit: "queries/s",
                rounds: rounds,
                contenders
            )
        )
    }
    oursRun.cancel()
    oursOnIOThreadsRun.cancel()
    nioRun.cancel()
    _ = await oursRun.result
    _ = await oursOnIOThreadsRun.result
    _ = await nioRun.result
    // Stopped here, before the process ends (a task started from a `defer` would never run).
    await server.stop()
    return comparisons
}

func findPgbench() -> String? {
    let candidates =
        ["/usr/bin/pgbench"]
        + ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).map {
            "/usr/lib/postgresql/\($0)/bin/pgbench"
        }
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// Runs pgbench with a custom script for about `seconds`; returns its tps (without initial
/// connection time).
///
/// pgbench's `-T` relies on SIGALRM, which a child spawned from a Swift program inherits blocked
/// (libdispatch's threads block it), so it would never stop: the run is sized with `-t` instead,
/// from a short calibration run.
func runPgbench(
    _ pgbench: String,
    server: TemporaryPostgres,
    script: String,
    clients: Int,
    seconds: Double,
    protocol: String = "simple"
) async throws -> Double {
    let calibration = try await runPgbench(
        pgbench,
        server: server,
        script: script,
        clients: clients,
        transactionsPerClient: 100,
        protocol: `protocol`
    )
    let perClient = max(100, Int(calibration * seconds / Double(clients)))
    return try await runPgbench(
        pgbench,
        server: server,
        script: script,
        clients: clients,
        transactionsPerClient: perClient,
        protocol: `protocol`
    )
}

func runPgbench(
    _ pgbench: String,
    server: TemporaryPostgres,
    script: String,
    clients: Int,
    transactionsPerClient: Int,
    protocol: String = "simple"
) async throws -> Double {
    let scriptPath = NSTemporaryDirectory() + "/sb-pgbench-\(getpid()).sql"
    try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
    let (status, text) = try await runProgram(
        pgbench,
        [
            "-n", "-M", `protocol`, "-f", scriptPath, "-c", "\(clients)", "-j", "2", "-t", "\(transactionsPerClient)",
            "-h", "127.0.0.1", "-p", "\(server.port)", "-U", server.user, server.database,
        ],
        environment: ["PGPASSWORD": server.password, "PATH": "/usr/bin:/bin"],
        keepStandardError: false
    )
    guard status == 0,
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("tps = ") }),
        let value = Double(line.dropFirst(6).prefix { $0 != " " })
    else {
        throw BenchmarkError("pgbench failed: \(text)")
    }
    return value
}

/// Synchronous libpq on one thread: the most one connection can do with no bridging at all.
func rawLibpq(_ conninfo: String, sql: String, seconds: Double) -> Double {
    let connection = PQconnectdb(conninfo)
    defer { PQfinish(connection) }
    guard PQstatus(connection) == CONNECTION_OK else { return .nan }
    let deadline = now() + UInt64(seconds * 1e9)
    let start = now()
    var count = 0
    while now() < deadline {
        let result = PQexecParams(connection, sql, 0, nil, nil, nil, nil, 0)
        precondition(PQresultStatus(result) == PGRES_TUPLES_OK)
        for row in 0..<PQntuples(result) {
            for column in 0..<PQnfields(result) {
                _ = String(cString: PQgetvalue(result, row, column))
            }
        }
        PQclear(result)
        count += 1
    }
    return Double(count) / (Double(now() - start) / 1e9)
}

struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
