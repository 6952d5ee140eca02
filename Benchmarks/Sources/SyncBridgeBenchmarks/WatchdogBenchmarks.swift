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

/// The watchdog's detection latency of full-band stalls of the utility band at a 50 ms
/// threshold, on an idle machine and on one whose every CPU is busy with other work.
struct DetectionLatency {
    /// For each trial whose stall was reported: the time from the last thread blocking to the
    /// report (stacks included) minus the threshold, in milliseconds.
    var latencies: [Double] = []
    /// For the same trials: how long after the last thread blocked the probe that waited was sent
    /// (the next probe of the band), in milliseconds; the rest of the latency is the watchdog's
    /// work at the threshold (sampling the band's stacks, classifying, delivering).
    var probeWaits: [Double] = []
    /// Trials whose stall was not reported (the watchdog judged the band starved of CPU rather
    /// than blocked, and counted it instead).
    var missed = 0
    /// Trials in all.
    var trials = 0
    /// The threshold, in milliseconds.
    let threshold = 50
}

/// Measures the detection latency over `trials` stalls; with `loaded`, a thread per CPU computes
/// without pause meanwhile, at the same priority as everything else in the process.
func detectionLatency(trials: Int, loaded: Bool) async throws -> DetectionLatency {
    var result = DetectionLatency()
    let log = ReportLog()
    let watchdog = Watchdog(
        configuration: .init(threshold: .milliseconds(result.threshold), bands: [.utility], onReport: log.record)
    )
    let stop = Atomic<Bool>(false)
    let spinning = Atomic<Int>(0)
    if loaded {
        for _ in 0..<cooperativeWidth {
            Thread.detachNewThread {
                spinning.add(1, ordering: .relaxed)
                var state: UInt64 = 1
                while !stop.load(ordering: .relaxed) {
                    for _ in 0..<10_000 { state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407 }
                }
                if state == 42 { print("") }  // keep the computation
                spinning.subtract(1, ordering: .relaxed)
            }
        }
        while spinning.load(ordering: .relaxed) < cooperativeWidth { try await Task.sleep(for: .milliseconds(1)) }
    }
    watchdog.start()
    let label = loaded ? "loaded" : "idle"
    for trial in 1...trials {
        // Let the band run probes again, so that no stale probe shortens the measurement; the
        // random part puts the stall at any point of the probe cycle (10 ms), as in real life.
        try await Task.sleep(for: .microseconds(30_000 + Int.random(in: 0..<10_000)))
        log.removeAll()
        let (blockedAt, done) = await blockUtilityBand(milliseconds: result.threshold * 3)
        await done.value
        // The stall's end is reported at the watchdog's next wake-up; a dismissed stall never is.
        let deadline = now() + 500_000_000
        while !log.all.contains(where: { !$0.report.isOngoing }) && now() < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        if let detected = log.all.first(where: { $0.report.isOngoing }) {
            // When the stall began for the watchdog: the probe that waited was sent then.
            let blockedWall = Date(timeIntervalSinceNow: -Double(now() - blockedAt) / 1e9)
            result.probeWaits.append(detected.report.startedAt.timeIntervalSince(blockedWall) * 1000)
            result.latencies.append(Double(Int64(detected.at) - Int64(blockedAt)) / 1e6 - Double(result.threshold))
        } else {
            result.missed += 1
        }
        result.trials += 1
        FileHandle.standardError.write(Data("\rdetection latency (\(label)): trial \(trial)/\(trials)".utf8))
    }
    FileHandle.standardError.write(Data("\n".utf8))
    await watchdog.shutdown()
    stop.store(true, ordering: .relaxed)
    while spinning.load(ordering: .relaxed) > 0 { try await Task.sleep(for: .milliseconds(1)) }
    return result
}

/// The watchdog's overhead on busy async code, its own cost, and its false positives.
func watchdogBenchmarks(rounds: Int, healthySeconds: Double) async throws -> [Comparison] {
    var comparisons: [Comparison] = []

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
