package import Metrics
import SyncBridge

/// The swift-metrics instruments of a connection's statements: OpenTelemetry's
/// `db.client.operation.duration` (seconds), by operation (`SELECT`, `INSERT`…) and, for failures,
/// `error.type`; and `syncbridge.<database>.abandoned_connections`.
package final class SQLStatementMetrics: Sendable {
    private struct Key: Hashable {
        var operation: String?
        var errorType: String?
    }

    private let factory: any MetricsFactory
    private let dimensions: [(String, String)]
    private let timers = Locked<[Key: Timer]>([:])
    /// Connections abandoned because the server did not answer a cancel or a timeout in time.
    let abandoned: Counter

    /// The instruments of a connection to `target`, for the database `Session` names.
    package init<Session: SQLSession>(
        _ session: Session.Type,
        target: SQLTracingTarget,
        factory: any MetricsFactory
    ) {
        var dimensions = [("db.system.name", Session.tracingSystemName)]
        if let namespace = target.namespace { dimensions.append(("db.namespace", namespace)) }
        if let address = target.address { dimensions.append(("server.address", address)) }
        if let port = target.port { dimensions.append(("server.port", String(port))) }
        self.dimensions = dimensions
        self.factory = factory
        abandoned = Counter(label: "syncbridge.\(Session.databaseName).abandoned_connections", factory: factory)
    }

    /// Records one statement that started at `start` (monotonic nanoseconds) and failed with
    /// `errorType` (the database's code, or the error's type), or succeeded.
    package func record(_ query: SQLQuery, start: UInt64, errorType: String?) {
        let elapsed = Int64(monotonicNanoseconds() &- start)
        let key = Key(operation: query.leadingKeyword, errorType: errorType)
        let timer = timers.withLock { timers in
            if let timer = timers[key] { return timer }
            var dimensions = self.dimensions
            if let operation = key.operation { dimensions.append(("db.operation.name", operation)) }
            if let errorType = key.errorType { dimensions.append(("error.type", errorType)) }
            let timer = Timer(
                label: "db.client.operation.duration",
                dimensions: dimensions,
                preferredDisplayUnit: .seconds,
                factory: factory
            )
            timers[key] = timer
            return timer
        }
        timer.recordNanoseconds(elapsed)
    }
}
