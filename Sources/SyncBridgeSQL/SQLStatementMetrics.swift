package import Metrics
import SyncBridge

/// The swift-metrics instruments of a facade's statements: `<prefix>.statements`,
/// `<prefix>.statement_failures`, `<prefix>.statement_duration` and
/// `<prefix>.abandoned_connections`.
package struct SQLStatementMetrics: Sendable {
    let statements: Counter
    let failures: Counter
    let duration: Timer
    /// Connections abandoned because the server did not answer a cancel or a timeout in time.
    let abandoned: Counter

    /// The instruments labelled `prefix` (`syncbridge.postgres`, `syncbridge.mariadb`).
    package init(prefix: String, factory: any MetricsFactory) {
        statements = Counter(label: "\(prefix).statements", factory: factory)
        failures = Counter(label: "\(prefix).statement_failures", factory: factory)
        duration = Timer(label: "\(prefix).statement_duration", factory: factory)
        abandoned = Counter(label: "\(prefix).abandoned_connections", factory: factory)
    }

    /// Records one statement that started at `start` (monotonic nanoseconds).
    package func record(start: UInt64, failed: Bool) {
        statements.increment()
        if failed { failures.increment() }
        duration.recordNanoseconds(Int64(monotonicNanoseconds() &- start))
    }
}
