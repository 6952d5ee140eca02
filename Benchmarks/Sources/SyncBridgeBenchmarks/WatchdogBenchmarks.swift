import Foundation
import SyncBridge
import Synchronization

/// The threads of one band of Swift's cooperative pool: one per CPU.
let cooperativeWidth = ProcessInfo.processInfo.activeProcessorCount

/// Reports a watchdog delivered, with their arrival times.
final class ReportLog: Sendable {
    private let entries = Mutex<[(WatchdogReport, UInt64)]>([])

    func record(_ report: WatchdogReport) {
        let at = now()
        entries.withLock { $0.append((report, at)) }
    }

    var all: [(report: WatchdogReport, at: UInt64)] { entries.withLock { $0.map { (report: $0.0, at: $0.1) } } }

    func removeAll() { entries.withLock { $0.removeAll() } }
}

/// Blocks every thread of the utility band for `milliseconds` (sleeping again when a stack
/// sample interrupts the sleep); returns when they have all started blocking, with that instant,
/// and the task that ends with them.
func blockUtilityBand(milliseconds: Int) async -> (blockedAt: UInt64, done: Task<Void, Never>) {
    let started = AsyncStream<UInt64>.makeStream()
    let done = Task.detached(priority: .utility) {
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<cooperativeWidth {
                group.addTask(priority: .utility) {
                    started.continuation.yield(now())
                    let end = now() + UInt64(milliseconds) * 1_000_000
                    while now() < end { usleep(UInt32(max(1, (end - min(end, now())) / 1000))) }
                }
            }
        }
    }
    var last: UInt64 = 0
    var count = 0
    for await instant in started.stream {
        last = max(last, instant)
        count += 1
        if count == cooperativeWidth { break }
    }
    return (last, done)
}

/// The watchdog's detection latency, its overhead on busy async code, and its false positives.
func watchdogBenchmarks(rounds: Int, trials: Int, healthySeconds: Double) async throws -> [Comparison] {
    var comparisons: [Comparison] = []

    // Detection latency: full-band stalls of the utility band at a 50 ms threshold.
    let log = ReportLog()
    let threshold = 50
    let watchdog = Watchdog(
        configuration: .init(threshold: .milliseconds(threshold), bands: [.utility], onReport: log.record)
    )
    watchdog.start()
    var latencies: [Double] = []
    for trial in 1...trials {
        // Let the band run probes again, so that no stale probe shortens the measurement.
        try await Task.sleep(for: .milliseconds(30))
        log.removeAll()
        let (blockedAt, done) = await blockUtilityBand(milliseconds: threshold * 3)
        await done.value
        while !log.all.contains(where: { !$0.report.isOngoing }) { try await Task.sleep(for: .milliseconds(5)) }
        if let detected = log.all.first(where: { $0.report.isOngoing }) {
            latencies.append(Double(Int64(detected.at) - Int64(blockedAt)) / 1e6 - Double(threshold))
        }
        FileHandle.standardError.write(Data("\rdetection latency: trial \(trial)/\(trials)".utf8))
    }
    FileHandle.standardError.write(Data("\n".utf8))
    await watchdog.shutdown()
    var detection = Comparison(
        title: "Detection latency of a full-band stall, threshold \(threshold) ms (\(trials) trials)",
        unit: "ms after the threshold",
        order: ["detection time - threshold"]
    )
    detection.samples["detection time - threshold"] = latencies
    comparisons.append(detection)

    // Overhead: the core hop and a 64-task Task.yield loop, watchdog off / lag probe on / per-job mode on.
    let pool = BlockingPool(name: "bench-watchdog-pool", threadCount: 1)
    let counter = Counter()
    // Rounds of about a second each: this VM's noise is several percent per short round.
    let hops = 100_000
    let yields = 20_000
    func withWatchdog(_ mode: String, _ body: () async throws -> Double) async rethrows -> Double {
        guard mode != "off" else { return try await body() }
        let watchdog = Watchdog(configuration: .init(timesEveryJob: mode == "per-job"))
        watchdog.start()
        let result = try await body()
        await watchdog.shutdown()
        return result
    }
    // Wall time is what users feel, but this VM's neighbours move it by tens of percent from round
    // to round; the process's CPU time per operation (the watchdog's thread and probes included)
    // is recorded beside it, which the neighbours move far less.
    func measured(_ name: String, operations: Int, _ body: () async throws -> Void) async rethrows -> Double {
        let cpuStart = processCPUNanoseconds()
        let start = now()
        try await body()
        let wall = Double(now() - start) / Double(operations)
        cpuTimes.withLock {
            $0[name, default: []].append(Double(processCPUNanoseconds() - cpuStart) / Double(operations))
        }
        return wall
    }
    let hop: (String) -> Contender = { mode in
        Contender(name: "hop, watchdog \(mode)") {
            try await withWatchdog(mode) {
                try await Task.detached {
                    try await measured("hop, watchdog \(mode)", operations: hops) {
                        for _ in 0..<hops { try await pool.run { counter.value &+= 1 } }
                    }
                }.value
            }
        }
    }
    let yieldLoop: (String) -> Contender = { mode in
        Contender(name: "64 tasks x Task.yield, watchdog \(mode)") {
            await withWatchdog(mode) {
                await measured("64 tasks x Task.yield, watchdog \(mode)", operations: 64 * yields) {
                    await withTaskGroup(of: Void.self) { group in
                        for _ in 0..<64 {
                            group.addTask {
                                for _ in 0..<yields { await Task.yield() }
                            }
                        }
                    }
                }
            }
        }
    }
    // The lag probe against off in rounds of their own, so that per-job mode (whose threads come
    // and go between rounds) cannot disturb the comparison the target is about.
    comparisons.append(
        try await compare(
            "Watchdog overhead on the core hop",
            unit: "ns per hop",
            rounds: rounds,
            ["off", "on"].map(hop)
        )
    )
    comparisons.append(
        try await compare(
            "Watchdog overhead on busy async code",
            unit: "ns per yield",
            rounds: rounds,
            ["off", "on"].map(yieldLoop)
        )
    )
    comparisons.append(
        try await compare(
            "Per-job mode overhead on the core hop (test-only)",
            unit: "ns per hop",
            rounds: max(3, rounds / 3),
            ["off", "per-job"].map(hop)
        )
    )
    comparisons.append(
        try await compare(
            "Per-job mode overhead on busy async code (test-only)",
            unit: "ns per yield",
            rounds: max(3, rounds / 3),
            ["off", "per-job"].map(yieldLoop)
        )
    )
    await pool.shutdownGracefully()

    // The watchdog's own cost, measured where noise cannot hide it: the CPU time an otherwise idle
    // process uses in 5 s, with the watchdog off, with the lag probe on, and in per-job mode.
    var idleCost = Comparison(
        title: "CPU time of an otherwise idle process (the watchdog's own cost)",
        unit: "% of one CPU",
        order: ["off", "on", "per-job"]
    )
    for _ in 0..<3 {
        for mode in ["off", "on", "per-job"] {
            let watchdog = mode == "off" ? nil : Watchdog(configuration: .init(timesEveryJob: mode == "per-job"))
            watchdog?.start()
            let cpuStart = processCPUNanoseconds()
            let start = now()
            try await Task.sleep(for: .seconds(5))
            let share = Double(processCPUNanoseconds() - cpuStart) / Double(now() - start) * 100
            await watchdog?.shutdown()
            idleCost.samples[mode, default: []].append(share)
        }
    }
    comparisons.append(idleCost)

    // False positives: a healthy load (blocking work offloaded, busy async tasks) under the watchdog.
    let healthyLog = ReportLog()
    let healthyWatchdog = Watchdog(configuration: .init(onReport: healthyLog.record))
    let offload = BlockingPool(name: "bench-healthy", threadCount: 8)
    healthyWatchdog.start()
    let deadline = now() + UInt64(healthySeconds * 1e9)
    let operations = OperationCount()
    await withTaskGroup(of: Void.self) { group in
        for task in 0..<32 {
            group.addTask {
                var state = UInt64(task)
                while now() < deadline {
                    if task % 4 == 0 {
                        // Legacy blocking call, offloaded.
                        _ = try? await offload.run { _ in usleep(2_000) }
                    } else {
                        // Async work: a little computation, then a suspension.
                        for _ in 0..<1_000 { state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407 }
                        await Task.yield()
                    }
                    operations.value.add(1, ordering: .relaxed)
                }
                if state == 42 { print("") }  // keep the computation
            }
        }
    }
    await healthyWatchdog.shutdown()
    await offload.shutdownGracefully()
    var healthy = Comparison(
        title:
            "False positives: \(healthySeconds) s of healthy load (32 tasks: blocking calls offloaded, busy async code; \(operations.value.load(ordering: .relaxed)) operations)",
        unit: "reports",
        order: ["watchdog reports"]
    )
    healthy.samples["watchdog reports"] = [Double(healthyLog.all.count)]
    comparisons.append(healthy)
    for entry in healthyLog.all { print(entry.report) }
    return comparisons
}

/// The `p`-th percentile (0...100) of `values`, nearest rank.
func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
    return sorted[max(0, min(sorted.count - 1, rank - 1))]
}

/// A count shared by the load's tasks.
final class OperationCount: Sendable {
    let value = Atomic<Int>(0)
}

/// The CPU time per operation of each overhead contender, round by round.
let cpuTimes = Mutex<[String: [Double]]>([:])

/// Nanoseconds of CPU time used by the whole process so far.
func processCPUNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
