import SampleSupport

/// What one phase of the demo measured.
struct PhaseResult: Sendable {
    var database: String
    var mode: String
    var completed = 0
    var failed = 0
    var refused = 0
    var elapsed: Duration = .zero
    var latencies: [Duration] = []
    var tickDelays: [Duration] = []
    var watchdogReports = 0
    var deadlockReports = 0

    var requestsPerSecond: Double {
        let seconds = elapsed.inSeconds
        return seconds > 0 ? Double(completed) / seconds : 0
    }
}

extension Array where Element == Duration {
    /// The value below which `fraction` of the values lie (nearest rank); `nil` when empty.
    func percentile(_ fraction: Double) -> Duration? {
        guard !isEmpty else { return nil }
        let sorted = self.sorted()
        let rank = Int((fraction * Double(sorted.count)).rounded(.up)) - 1
        return sorted[Swift.min(Swift.max(rank, 0), sorted.count - 1)]
    }
}

/// The table the demo ends with.
enum ResultTable {
    static func render(_ results: [PhaseResult]) -> String {
        let header = [
            "database", "mode", "requests/s", "p50 ms", "p99 ms", "other tasks' delay p99 ms", "watchdog reports",
            "deadlock reports", "failed",
        ]
        var rows = [header]
        for result in results {
            rows.append([
                result.database,
                result.mode,
                result.completed == 0 ? "-" : format(result.requestsPerSecond, decimals: 0),
                result.latencies.percentile(0.5).map { format($0.inMilliseconds, decimals: 2) } ?? "-",
                result.latencies.percentile(0.99).map { format($0.inMilliseconds, decimals: 2) } ?? "-",
                result.tickDelays.percentile(0.99).map { format($0.inMilliseconds, decimals: 1) } ?? "-",
                String(result.watchdogReports),
                String(result.deadlockReports),
                result.refused > 0 ? "\(result.failed) (\(result.refused) refused)" : String(result.failed),
            ])
        }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { column, cell in
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return column < 2 ? cell + padding : padding + cell
            }.joined(separator: "  ")
        }
        let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")
        return ([line(header), rule] + rows.dropFirst().map(line)).joined(separator: "\n")
    }

    static func format(_ value: Double, decimals: Int) -> String {
        var text = String(Int((value * pow10(decimals)).rounded()))
        if decimals > 0 {
            while text.count <= decimals { text = "0" + text }
            text.insert(".", at: text.index(text.endIndex, offsetBy: -decimals))
        }
        return text
    }

    private static func pow10(_ exponent: Int) -> Double {
        (0..<exponent).reduce(1.0) { value, _ in value * 10 }
    }
}
