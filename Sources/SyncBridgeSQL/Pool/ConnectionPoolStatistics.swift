import Metrics

/// A snapshot of a ``ConnectionPool``.
public struct ConnectionPoolStatistics: Hashable, Sendable {
    /// Open connections not leased.
    public var idle: Int
    /// Connections leased to tasks.
    public var leased: Int
    /// Connection attempts in flight.
    public var connecting: Int
    /// Tasks waiting for a connection.
    public var waiting: Int
}

/// The swift-metrics instruments of one pool.
struct PoolMetrics: Sendable {
    let idle: Meter
    let leased: Meter
    let waiting: Meter
    let acquireDuration: Timer
    let acquireTimeouts: Counter
    let connectionsOpened: Counter
    let connectionsClosed: Counter
    let connectFailures: Counter
    let connectFailedLeases: Counter
    let circuitOpen: Meter

    init(name: String, factory: any MetricsFactory) {
        let dimensions = [("pool", name)]
        idle = Meter(label: "syncbridge.pool.idle", dimensions: dimensions, factory: factory)
        leased = Meter(label: "syncbridge.pool.leased", dimensions: dimensions, factory: factory)
        waiting = Meter(label: "syncbridge.pool.waiting", dimensions: dimensions, factory: factory)
        acquireDuration = Timer(label: "syncbridge.pool.acquire_duration", dimensions: dimensions, factory: factory)
        acquireTimeouts = Counter(label: "syncbridge.pool.acquire_timeouts", dimensions: dimensions, factory: factory)
        connectionsOpened = Counter(
            label: "syncbridge.pool.connections_opened",
            dimensions: dimensions,
            factory: factory
        )
        connectionsClosed = Counter(
            label: "syncbridge.pool.connections_closed",
            dimensions: dimensions,
            factory: factory
        )
        connectFailures = Counter(label: "syncbridge.pool.connect_failures", dimensions: dimensions, factory: factory)
        connectFailedLeases = Counter(
            label: "syncbridge.pool.connect_failed_leases",
            dimensions: dimensions,
            factory: factory
        )
        circuitOpen = Meter(label: "syncbridge.pool.circuit_open", dimensions: dimensions, factory: factory)
    }
}
