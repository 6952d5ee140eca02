import Foundation
import SyncBridgeMariaDB
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting

/// Threads and resident memory of a client with 8, 64, 256 and 1,000 open connections, each
/// model (a thread per connection, two I/O threads), each database.
///
/// Each figure comes from a process of its own (this program, run again with `footprint-child`),
/// so that one measurement's freed memory, which the allocator keeps, never counts in the next:
/// the child opens the connections, runs twice as many tasks of `SELECT 1` for three seconds so
/// that every connection and thread has done its work (and, on I/O threads, the connections' own
/// threads, idle since they connected, have retired: `SQLIOThreads.connectionThreadIdleLifetime`),
/// then reads its own `/proc/self/status` while the tasks still run. A child
/// with one connection gives the baseline the per-connection figures are counted from (what
/// each further connection adds, without the libraries' one-time start-up).
struct Footprint {
    var threads: Int
    var residentKiB: Int
}

/// The servers, started for the run: MariaDB's allows 1,200 connections, PostgreSQL's 300 (its
/// row stops at 256).
func footprintBenchmarks(sizes: [Int]) async throws {
    let postgres = try await TemporaryPostgres.start()
    let mariadb = try await TemporaryMariaDB.start()
    let mariadbTarget =
        "\(mariadb.host)|\(mariadb.port)|\(mariadb.user)|\(mariadb.password)|\(mariadb.database)"
    print("\n## Threads and resident memory by pool size (a process per figure)")
    print(
        "\n| database, model | connections | threads | RSS (MiB) | threads per further connection | RSS per further connection (KiB) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for (database, target) in [("PostgreSQL", postgres.connectionString), ("MariaDB", mariadbTarget)] {
        for model in ["threads", "io"] {
            let baseline = try await footprintChild(database: database, target: target, connections: 1, model: model)
            // The throwaway PostgreSQL server allows 300 connections (and MariaDB's 1,200).
            for size in sizes where database == "MariaDB" || size <= 256 {
                let measured = try await footprintChild(
                    database: database,
                    target: target,
                    connections: size,
                    model: model
                )
                let threadsPer = Double(measured.threads - baseline.threads) / Double(size - 1)
                let residentPer = Double(measured.residentKiB - baseline.residentKiB) / Double(size - 1)
                let name = model == "io" ? "2 I/O threads" : "a thread per connection"
                print(
                    "| \(database), \(name) | \(size) | \(measured.threads) | "
                        + String(format: "%.1f", Double(measured.residentKiB) / 1024)
                        + " | \(String(format: "%.2f", threadsPer)) | \(String(format: "%.0f", residentPer)) |"
                )
            }
        }
    }
    await postgres.stop()
    await mariadb.stop()
}

/// Runs one measurement in a process of its own.
func footprintChild(database: String, target: String, connections: Int, model: String) async throws -> Footprint {
    var environment = ProcessInfo.processInfo.environment
    // The target carries the throwaway server's password: in the environment, not the arguments.
    environment["SB_FOOTPRINT_TARGET"] = target
    let (status, output) = try await runProgram(
        "/proc/self/exe",
        ["footprint-child", database, "\(connections)", model],
        environment: environment
    )
    guard status == 0,
        let line = output.split(separator: "\n").first(where: { $0.hasPrefix("FOOTPRINT ") })
    else {
        throw BenchmarkError("footprint child (\(database), \(connections), \(model)) failed: \(output)")
    }
    let fields = line.split(separator: " ").compactMap { Int($0) }
    guard fields.count == 2 else { throw BenchmarkError("unreadable footprint line: \(line)") }
    return Footprint(threads: fields[0], residentKiB: fields[1])
}

/// The child's side: opens `connections` connections of `database` on `model`, loads them, and
/// prints `FOOTPRINT <threads> <RSS KiB>`.
func runFootprintChild(database: String, connections: Int, model: String) async throws {
    guard let target = ProcessInfo.processInfo.environment["SB_FOOTPRINT_TARGET"] else {
        throw BenchmarkError("footprint-child needs SB_FOOTPRINT_TARGET")
    }
    let ioThreads = model == "io" ? SQLIOThreads(count: 2, name: "sb-io-bench") : .off
    let pool = ConnectionPoolConfiguration.open(connections)
    if database == "PostgreSQL" {
        let client = PostgresClient(connectionString: target, configuration: pool, ioThreads: ioThreads, name: "fp")
        try await load(client, connections: connections)
    } else {
        let parts = target.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        let configuration = MariaDBConfiguration(
            host: parts[0],
            port: Int(parts[1])!,
            user: parts[2],
            password: parts[3],
            database: parts[4]
        )
        let client = MariaDBClient(
            configuration: configuration,
            poolConfiguration: pool,
            ioThreads: ioThreads,
            name: "fp"
        )
        try await load(client, connections: connections)
    }
}

/// Opens every connection, runs twice as many tasks of `SELECT 1` for three seconds, and prints
/// the footprint at the end of the load, while the connections are open and busy.
private func load<Session: SQLSession>(_ client: SQLClient<Session>, connections: Int) async throws {
    let run = Task { try await client.run() }
    while client.pool.statistics.idle + client.pool.statistics.leased < connections {
        try await Task.sleep(for: .milliseconds(20))
    }
    let work = Task {
        try await queriesPerSecond("footprint", tasks: 2 * connections, seconds: 3) {
            _ = try await client.query("SELECT 1")
        }
    }
    try await Task.sleep(for: .milliseconds(2_800))
    let (threads, resident) = processFootprint()
    _ = try await work.value
    print("FOOTPRINT \(threads) \(resident)")
    run.cancel()
    _ = await run.result
    await client.shutdown()
}

/// The process's thread count and resident set size in KiB, from `/proc/self/status`.
private func processFootprint() -> (threads: Int, residentKiB: Int) {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    func value(_ key: String) -> Int {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return -1 }
        return Int(line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? -1
    }
    return (value("Threads:"), value("VmRSS:"))
}
