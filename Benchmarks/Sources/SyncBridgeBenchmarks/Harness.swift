import Foundation

/// Nanoseconds on the monotonic clock.
func now() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// One contender of a side-by-side comparison: a name and a function that runs one round and
/// returns its figure (nanoseconds per operation, or operations per millisecond).
struct Contender {
    let name: String
    let round: () async throws -> Double
}

/// Per-contender figures of one comparison.
struct Comparison {
    let title: String
    let unit: String
    var samples: [String: [Double]] = [:]
    let order: [String]

    func median(_ name: String) -> Double {
        let sorted = samples[name, default: []].sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted.count.isMultiple(of: 2)
            ? (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2 : sorted[sorted.count / 2]
    }

    /// The median over rounds of `name`'s figure divided by `reference`'s figure in the same
    /// round, minus one: the change a contender makes, with the noise that moves whole rounds
    /// (neighbours on the VM) cancelled out.
    func pairedChange(_ name: String, against reference: String) -> Double {
        let ours = samples[name, default: []]
        let theirs = samples[reference, default: []]
        let ratios = zip(ours, theirs).map { $0 / $1 }.sorted()
        guard !ratios.isEmpty else { return .nan }
        let median =
            ratios.count.isMultiple(of: 2)
            ? (ratios[ratios.count / 2 - 1] + ratios[ratios.count / 2]) / 2 : ratios[ratios.count / 2]
        return median - 1
    }
}

/// The `--only` argument, if given.
let onlyContenders: String? = CommandLine.arguments.firstIndex(of: "--only").flatMap {
    $0 + 1 < CommandLine.arguments.count ? CommandLine.arguments[$0 + 1] : nil
}

/// Runs every contender once per round, interleaved, so that the machine's noise hits them all
/// alike; every other round runs them in reverse order, so that none always follows another. A
/// warm-up round is discarded.
func compare(_ title: String, unit: String, rounds: Int, _ contenders: [Contender]) async throws -> Comparison {
    // `--only TEXT` keeps the contenders whose name contains TEXT (for profiling one of them);
    // `--only "A|B"` those whose name contains A or B (one contender beside its peer); a part
    // that starts with `=` keeps only the contender named exactly so.
    let contenders =
        onlyContenders.map { only in
            let parts = only.split(separator: "|")
            return contenders.filter { contender in
                parts.contains { part in
                    part.hasPrefix("=") ? contender.name == part.dropFirst() : contender.name.contains(part)
                }
            }
        } ?? contenders
    var comparison = Comparison(title: title, unit: unit, order: contenders.map(\.name))
    for contender in contenders { _ = try await contender.round() }  // warm-up
    for round in 1...rounds {
        for contender in round.isMultiple(of: 2) ? contenders.reversed() : contenders {
            comparison.samples[contender.name, default: []].append(try await contender.round())
        }
        FileHandle.standardError.write(Data("\r\(title): round \(round)/\(rounds)".utf8))
    }
    FileHandle.standardError.write(Data("\n".utf8))
    return comparison
}

/// `--per-round`: the report lists every round's figure too, in order (to see when a round
/// falls, not only that one did).
let reportsEveryRound = CommandLine.arguments.contains("--per-round")

/// Prints a comparison as a Markdown table of medians.
func report(_ comparison: Comparison) {
    print("\n### \(comparison.title)\n")
    print("| contender | median \(comparison.unit) | min | max |\(reportsEveryRound ? " rounds |" : "")")
    print("| --- | ---: | ---: | ---: |\(reportsEveryRound ? " --- |" : "")")
    for name in comparison.order {
        let samples = comparison.samples[name, default: []]
        let rounds = reportsEveryRound ? " \(samples.map(format).joined(separator: ", ")) |" : ""
        print(
            "| \(name) | \(format(comparison.median(name))) | \(format(samples.min() ?? .nan)) | \(format(samples.max() ?? .nan)) |\(rounds)"
        )
    }
}

func format(_ value: Double) -> String {
    value >= 100 ? String(format: "%.0f", value) : String(format: "%.2f", value)
}

/// Runs `body` on a new plain OS thread and returns its result.
func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.start()
    }
}

/// Runs a program to its end and returns its exit status and its output (stdout and, unless
/// `keepStandardError` is false, stderr). The output is read on a dedicated thread.
func runProgram(
    _ path: String,
    _ arguments: [String],
    environment: [String: String]? = nil,
    keepStandardError: Bool = true
) async throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = keepStandardError ? output : FileHandle.nullDevice
    try process.run()
    let data = await onDedicatedThread { output.fileHandleForReading.readDataToEndOfFile() }
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// A counter mutated by the benchmarked closures, so that no hop is optimised away.
final class Counter: @unchecked Sendable {
    // Only ever mutated by one thread at a time: each benchmark awaits every closure it submits
    // before it submits the next.
    var value = 0
}
