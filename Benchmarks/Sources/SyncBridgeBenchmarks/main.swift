import Foundation

// Usage: swift run -c release SyncBridgeBenchmarks [hop|tracing-cost|postgres|mariadb|inserts|latency|scaling|transactions|footprint|watchdog|watchdog-latency|event-loops|deadlock] [--rounds N] [--seconds S] [--sizes 8,64,256] [--mariadb] [--io-threads N] [--tasks-per-connection N] [--hundred-rows] [--rows N] [--trials N] [--only NAME]
// Prints Markdown tables of medians and the ratios the targets are stated in.

let arguments = CommandLine.arguments.dropFirst()
let suites = arguments.filter { !$0.hasPrefix("--") && Int($0) == nil }
let rounds =
    arguments.firstIndex(of: "--rounds").flatMap {
        arguments.index(after: $0) < arguments.endIndex ? Int(arguments[arguments.index(after: $0)]) : nil
    } ?? 15

func ratio(_ a: Double, _ b: Double) -> String { String(format: "%.2f", a / b) }

if arguments.first == "footprint-child" {
    // One measurement of the footprint suite, in a process of its own.
    let values = Array(arguments.dropFirst())
    try await runFootprintChild(database: values[0], connections: Int(values[1])!, model: values[2])
    exit(0)
}

if suites.contains("footprint") {
    let sizes =
        arguments.firstIndex(of: "--sizes").map { index in
            arguments[arguments.index(after: index)].split(separator: ",").compactMap { Int($0) }
        } ?? [8, 64, 256, 1_000]
    try await footprintBenchmarks(sizes: sizes)
}

if suites.isEmpty || suites.contains("hop") {
    print("## Core hop and throughput (\(rounds) interleaved rounds, medians)")
    let hop = try await hopBenchmarks(rounds: rounds, iterations: 20_000)[0]
    report(hop)
    let floor = hop.median("pthread mutex+condvar ping-pong (floor)")
    let nio = hop.median("NIOThreadPool.runIfActive")
    print("\nRatios (target: hop <= 0.5x NIOThreadPool.runIfActive and <= 1.5x the pthread floor):\n")
    for name in [
        "SyncBridge BlockingPool.run", "SyncBridge ThreadExecutor actor method", "SyncBridge ThreadExecutor.run",
    ] {
        let ours = hop.median(name)
        print("- \(name): \(ratio(ours, nio))x NIOThreadPool.runIfActive, \(ratio(ours, floor))x the pthread floor")
    }

    let throughput = try await throughputBenchmarks(rounds: max(3, rounds / 2))[0]
    report(throughput)
    let ours = throughput.median("SyncBridge BlockingPool.run")
    let floorJobs = throughput.median("8 raw pthreads, 125 sleeps each (floor)")
    let jobMilliseconds = meanJobMilliseconds()
    let ideal = 8 / jobMilliseconds
    func percent(_ value: Double, of reference: Double) -> String { String(format: "%.1f %%", value / reference * 100) }
    print(
        "\nA '1 ms' job really lasted \(String(format: "%.3f", jobMilliseconds)) ms on average (nanosleep overshoots), so the ideal is \(String(format: "%.2f", ideal)) jobs/ms, not 8."
    )
    print("\nRatios (target: >= 90 % of the ideal):\n")
    for name in ["SyncBridge BlockingPool.run", "NIOThreadPool.runIfActive", "8 raw pthreads, 125 sleeps each (floor)"]
    {
        let value = throughput.median(name)
        print(
            "- \(name): \(percent(value, of: ideal)) of the ideal for the jobs' real duration, \(percent(value, of: 8)) of the nominal 8 jobs/ms"
        )
    }
    print("- SyncBridge BlockingPool.run vs the raw-pthread floor: \(percent(ours, of: floorJobs))")
}

if suites.contains("tracing-cost") {
    print("## What tracing costs with no tracer (\(rounds) interleaved rounds, medians)")
    let cost = try await tracingCostBenchmarks(rounds: rounds)
    report(cost)
    reportTracingCost(cost)
}

if suites.isEmpty || suites.contains("postgres") {
    let seconds = arguments.firstIndex(of: "--seconds").flatMap { Double(arguments[arguments.index(after: $0)]) } ?? 2
    print("\n## PostgreSQL (\(rounds) interleaved rounds, medians)")
    for comparison in try await postgresBenchmarks(rounds: rounds, seconds: seconds) {
        report(comparison)
        print("\nRatios (target: SyncBridge >= 1.0x PostgresNIO at 8 tasks, >= 1.5x at 64 tasks):\n")
        for tasks in [8, 64] {
            let ours = comparison.median("SyncBridge PostgresClient, a thread per connection, \(tasks) tasks")
            let nio = comparison.median("PostgresNIO PostgresClient, \(tasks) tasks")
            print("- \(tasks) tasks: \(ratio(ours, nio))x PostgresNIO")
        }
        for tasks in [8, 64] {
            let ours = comparison.median("SyncBridge PostgresClient, a thread per connection, \(tasks) tasks")
            let prepared = comparison.median("PostgresNIO prepared statement, \(tasks) tasks")
            print("- \(tasks) tasks: \(ratio(ours, prepared))x PostgresNIO's prepared statements")
            for peer in ["pgbench -c 8 -j 2", "pgbench -M prepared -c 8 -j 2"] where !comparison.median(peer).isNaN {
                print("- \(tasks) tasks: \(ratio(ours, comparison.median(peer)))x \(peer)")
            }
        }
        for tasks in [8, 64] {
            let tasksOnThem = comparison.median(
                "SyncBridge PostgresClient on 2 I/O threads, tasks on them, \(tasks) tasks"
            )
            let pgbench = comparison.median("pgbench -M prepared -c 8 -j 2")
            guard !tasksOnThem.isNaN else { continue }
            print("- \(tasks) tasks on the I/O threads themselves: \(ratio(tasksOnThem, pgbench))x pgbench -M prepared")
        }
        for tasks in [8, 64] {
            let pipelining = comparison.median("SyncBridge PostgresClient on 2 I/O threads, \(tasks) tasks")
            let prepared = comparison.median("PostgresNIO prepared statement, \(tasks) tasks")
            let pgbench = comparison.median("pgbench -M prepared -c 8 -j 2")
            guard !pipelining.isNaN else { continue }
            print(
                "- \(tasks) tasks on I/O threads (automatic pipelining; target at 64: >= 1.0x pgbench -M prepared, "
                    + ">= 3x PostgresNIO): \(ratio(pipelining, pgbench))x pgbench -M prepared, "
                    + "\(ratio(pipelining, prepared))x PostgresNIO's prepared statements"
            )
        }
        let pgbenchPipeline = comparison.median("pgbench pipeline of 100 -M prepared -c 8 -j 2")
        let pipelined = comparison.median("SyncBridge pipeline of 100, 8 tasks")
        if !pipelined.isNaN && !pgbenchPipeline.isNaN {
            print(
                "- pipelines of 100, a sync point each: \(ratio(pipelined, pgbenchPipeline))x pgbench's pipeline mode"
            )
        }
        let atomic = comparison.median("SyncBridge atomic pipeline of 100, 8 tasks")
        if !atomic.isNaN && !pgbenchPipeline.isNaN {
            print(
                "- atomic pipelines of 100, one sync point as pgbench's (target >= 0.5x): "
                    + "\(ratio(atomic, pgbenchPipeline))x pgbench's pipeline mode"
            )
        }
    }
}

if suites.contains("scaling") {
    let seconds = arguments.firstIndex(of: "--seconds").flatMap { Double(arguments[arguments.index(after: $0)]) } ?? 2
    let sizes =
        arguments.firstIndex(of: "--sizes").map { index in
            arguments[arguments.index(after: index)].split(separator: ",").compactMap { Int($0) }
        } ?? [8, 64, 256]
    let workload: PostgresWorkload = arguments.contains("--hundred-rows") ? .hundredRows : .selectOne
    let ioThreadCount =
        arguments.firstIndex(of: "--io-threads").flatMap { Int(arguments[arguments.index(after: $0)]) } ?? 2
    let tasksPerConnection =
        arguments.firstIndex(of: "--tasks-per-connection").flatMap { Int(arguments[arguments.index(after: $0)]) } ?? 2
    if arguments.contains("--mariadb") {
        print("\n## MariaDB by pool size (\(rounds) interleaved rounds, medians)")
        for comparison in try await mariadbScalingBenchmarks(
            rounds: rounds,
            seconds: seconds,
            sizes: sizes,
            workload: arguments.contains("--hundred-rows") ? .hundredRows : .selectOne,
            ioThreadCount: ioThreadCount,
            tasksPerConnection: tasksPerConnection
        ) {
            report(comparison)
            let mysqlslap = comparison.median("mysqlslap")
            print("\nRatios (target: >= 0.7x mysqlslap at every size):\n")
            for name in [
                "SyncBridge, a thread per connection", "SyncBridge, \(ioThreadCount) I/O threads",
                "SyncBridge, \(ioThreadCount) I/O threads, tasks on them",
            ] {
                print("- \(name): \(ratio(comparison.median(name), mysqlslap))x mysqlslap")
            }
        }
    } else {
        print("\n## PostgreSQL by pool size (\(rounds) interleaved rounds, medians)")
        for comparison in try await scalingBenchmarks(
            rounds: rounds,
            seconds: seconds,
            sizes: sizes,
            workload: workload,
            ioThreadCount: ioThreadCount,
            tasksPerConnection: tasksPerConnection
        ) {
            report(comparison)
            let pgbench = comparison.median("pgbench -M prepared -j 2")
            print("\nRatios (target: >= 0.7x pgbench -M prepared at every size):\n")
            for name in [
                "SyncBridge, a thread per connection", "SyncBridge, \(ioThreadCount) I/O threads",
                "SyncBridge, \(ioThreadCount) I/O threads, tasks on them",
            ] {
                print("- \(name): \(ratio(comparison.median(name), pgbench))x pgbench")
            }
        }
    }
}

if suites.isEmpty || suites.contains("mariadb") {
    let seconds = arguments.firstIndex(of: "--seconds").flatMap { Double(arguments[arguments.index(after: $0)]) } ?? 2
    print("\n## MariaDB (\(rounds) interleaved rounds, medians)")
    for comparison in try await mariadbBenchmarks(rounds: rounds, seconds: seconds) {
        report(comparison)
        let slap = comparison.median("mysqlslap --concurrency=8")
        print("\nRatios (target: SyncBridge >= 0.5x mysqlslap at 8 connections; >= 2x the asyncio clients):\n")
        for tasks in [8, 64] {
            let ours = comparison.median("SyncBridge MariaDBClient, a thread per connection, \(tasks) tasks")
            print("- SyncBridge, \(tasks) tasks: \(ratio(ours, slap))x mysqlslap")
            let onIOThreads = comparison.median("SyncBridge MariaDBClient on 2 I/O threads, \(tasks) tasks")
            print("- SyncBridge on 2 I/O threads, \(tasks) tasks: \(ratio(onIOThreads, slap))x mysqlslap")
            let tasksOnThem = comparison.median(
                "SyncBridge MariaDBClient on 2 I/O threads, tasks on them, \(tasks) tasks"
            )
            print(
                "- SyncBridge on 2 I/O threads, \(tasks) tasks on them: \(ratio(tasksOnThem, slap))x mysqlslap"
            )
            for driver in ["asyncmy", "aiomysql"] {
                let python = comparison.median("Python \(driver) (asyncio), 8 connections, \(tasks) tasks")
                if !python.isNaN {
                    print("- SyncBridge, \(tasks) tasks: \(ratio(ours, python))x Python \(driver) at \(tasks) tasks")
                }
            }
        }
    }
}

if suites.isEmpty || suites.contains("inserts") {
    let rows = arguments.firstIndex(of: "--rows").flatMap { Int(arguments[arguments.index(after: $0)]) } ?? 100_000
    print("\n## Inserting many rows (\(rounds) interleaved rounds, medians)")
    let comparisons = try await insertBenchmarks(rounds: rounds, rows: rows)
    for comparison in comparisons { report(comparison) }
    let postgres = comparisons[0]
    let mariadb = comparisons[1]
    print("\nRatios (target: MariaDB executeMany >= 10x one insert per call):\n")
    let single = postgres.median("one INSERT per call")
    print(
        "- PostgreSQL pipeline: \(ratio(postgres.median("pipeline, batches of 1,000"), single))x one INSERT per call, \(ratio(postgres.median("pipeline, batches of 1,000"), postgres.median("COPY FROM STDIN (the ceiling)")))x COPY"
    )
    let one = mariadb.median("one insert per call")
    print(
        "- MariaDB executeMany in bulk commands: \(ratio(mariadb.median("executeMany, bulk commands"), one))x one insert per call"
    )
    print(
        "- MariaDB executeMany, one execution per row: \(ratio(mariadb.median("executeMany, one execution per row"), one))x one insert per call"
    )
}

if suites.contains("transactions") {
    let seconds = arguments.firstIndex(of: "--seconds").flatMap { Double(arguments[arguments.index(after: $0)]) } ?? 2
    let sizes =
        arguments.firstIndex(of: "--sizes").map { index in
            arguments[arguments.index(after: index)].split(separator: ",").compactMap { Int($0) }
        } ?? [8, 64]
    print("\n## Transactions (\(rounds) interleaved rounds, medians)")
    for comparison in try await transactionBenchmarks(rounds: rounds, seconds: seconds, sizes: sizes) {
        report(comparison)
        let before = comparison.median("SyncBridge, a thread per connection")
        let now = comparison.median("SyncBridge, 2 I/O threads (the default)")
        print("\nThe default I/O threads: \(ratio(now, before))x a thread per connection (target: no slower, >= 1.0x)")
        if comparison.samples["pgbench -M prepared -j 2"] != nil {
            print("- against pgbench -M prepared: \(ratio(now, comparison.median("pgbench -M prepared -j 2")))x")
        }
    }
}

if suites.isEmpty || suites.contains("latency") {
    let seconds = arguments.firstIndex(of: "--seconds").flatMap { Double(arguments[arguments.index(after: $0)]) } ?? 2
    print("\n## A server 1 ms away (\(rounds) interleaved rounds, medians)")
    let comparison = try await latencyBenchmarks(rounds: rounds, seconds: seconds, roundTrip: .milliseconds(1))
    report(comparison)
    let single = comparison.median("SyncBridge, a thread per connection, one statement per call, 64 tasks")
    print("\nRatios (target: the explicit pipeline >= 10x one statement per call):\n")
    print(
        "- SyncBridge pipeline of 100: \(ratio(comparison.median("SyncBridge pipeline of 100, 8 tasks"), single))x one statement per call"
    )
    print(
        "- PostgresNIO: \(ratio(comparison.median("PostgresNIO query(), 64 tasks"), single))x SyncBridge one statement per call"
    )
    print(
        "- automatic pipelining on I/O threads (target >= 5x): \(ratio(comparison.median("SyncBridge on I/O threads (automatic pipelining), one statement per call, 64 tasks"), single))x one statement per call without it"
    )
}

if suites.isEmpty || suites.contains("watchdog") || suites.contains("watchdog-latency") {
    let trials = arguments.firstIndex(of: "--trials").flatMap { Int(arguments[arguments.index(after: $0)]) } ?? 100
    print("\n## Watchdog detection latency (\(trials) trials each, idle and loaded)")
    for loaded in [false, true] {
        let result = try await detectionLatency(trials: trials, loaded: loaded)
        let latencies = result.latencies
        func figure(_ value: Double) -> String { String(format: "%.1f", value) }
        print(
            "\n### Full-band stall, threshold \(result.threshold) ms, machine \(loaded ? "loaded (a computing thread per CPU)" : "idle")\n"
        )
        print(
            "reported \(latencies.count) of \(result.trials) stalls (\(result.missed) judged starved and counted instead); after the threshold: median \(figure(percentile(latencies, 50))) ms, p99 \(figure(percentile(latencies, 99))) ms, max \(figure(latencies.max() ?? .nan)) ms (target: p99 <= 15 ms)"
        )
        let work = zip(latencies, result.probeWaits).map { $0 - $1 }
        print(
            "of which the wait for the band's next probe: median \(figure(percentile(result.probeWaits, 50))) ms, p99 \(figure(percentile(result.probeWaits, 99))) ms; the watchdog's work at the threshold (stacks, classification, delivery): median \(figure(percentile(work, 50))) ms, p99 \(figure(percentile(work, 99))) ms, max \(figure(work.max() ?? .nan)) ms"
        )
    }
}

if suites.isEmpty || suites.contains("watchdog") {
    let seconds = arguments.firstIndex(of: "--seconds").flatMap { Double(arguments[arguments.index(after: $0)]) } ?? 60
    print("\n## Watchdog (\(rounds) interleaved rounds, medians)")
    let results = try await watchdogBenchmarks(rounds: rounds, healthySeconds: seconds)
    for comparison in results[0...3] {
        report(comparison)
        let off =
            comparison.samples.first { $0.key.hasSuffix("off") }.map { _ in comparison.median(comparison.order[0]) }
            ?? .nan
        print("")
        let cpu = cpuTimes.withLock { $0 }
        func cpuMedian(_ name: String) -> Double {
            let values = (cpu[name] ?? []).sorted()
            return values.isEmpty ? .nan : values[values.count / 2]
        }
        for name in comparison.order.dropFirst() {
            let cpuChange = cpuMedian(name) / cpuMedian(comparison.order[0]) - 1
            print(
                "- \(name): wall time \(String(format: "%+.1f %%", comparison.pairedChange(name, against: comparison.order[0]) * 100)) (median of the round-by-round ratios; ratio of medians \(String(format: "%+.1f %%", (comparison.median(name) / off - 1) * 100))), CPU time \(String(format: "%+.1f %%", cpuChange * 100)) against off (target for the lag probe: <= 2 %; per-job mode is test-only)"
            )
        }
        print(
            "- CPU ns per operation, medians: "
                + comparison.order.map { "\($0): \(String(format: "%.0f", cpuMedian($0)))" }.joined(separator: "; ")
        )
    }
    report(results[4])
    print(
        "\nThe lag probe costs \(String(format: "%.2f", results[4].median("on") - results[4].median("off"))) % of one CPU; on this \(ProcessInfo.processInfo.activeProcessorCount)-CPU machine, a fully busy process would lose at most \(String(format: "%.2f", (results[4].median("on") - results[4].median("off")) / Double(ProcessInfo.processInfo.activeProcessorCount))) % (target: <= 2 %)."
    )
    print("\n### \(results[5].title)\n")
    print("\(Int(results[5].samples["watchdog reports"]?.first ?? -1)) reports (target: 0)")
}

if suites.isEmpty || suites.contains("event-loops") {
    let seconds = arguments.firstIndex(of: "--seconds").flatMap { Int(arguments[arguments.index(after: $0)]) } ?? 3
    print("\n## Event-loop watchdog on a loaded loop (\(rounds) interleaved rounds, medians)")
    let (comparison, reports) = try await eventLoopWatchdogBenchmarks(rounds: rounds, seconds: seconds)
    report(comparison)
    let change = comparison.pairedChange("watchdog watching the loop (100 ms)", against: "no watchdog")
    print(
        "\n- with the watchdog: requests/s \(String(format: "%+.1f %%", change * 100)) (median of the round-by-round ratios; target: no worse than -2 %); \(reports) reports (target: 0)"
    )
}

if suites.isEmpty || suites.contains("deadlock") {
    let seconds = arguments.firstIndex(of: "--seconds").flatMap { Double(arguments[arguments.index(after: $0)]) } ?? 2
    print("\n## Deadlock detector (\(rounds) interleaved rounds, medians)")
    print("\nTarget: with the detector on (report mode), the core hop and the database clients at most 5 % slower.")
    for comparison in try await deadlockBenchmarks(rounds: rounds, seconds: seconds) {
        report(comparison)
        print("")
        for on in comparison.order where on.hasSuffix("detector on") {
            let off = String(on.dropLast(2)) + "off"
            // Times per operation grow when slower; throughputs shrink.
            let slower =
                comparison.unit == "queries/s"
                ? comparison.pairedChange(off, against: on) : comparison.pairedChange(on, against: off)
            print(
                "- \(on.replacingOccurrences(of: ", detector on", with: "")): \(String(format: "%+.1f %%", slower * 100)) slower with the detector on (median of the round-by-round ratios)"
            )
        }
    }
}
