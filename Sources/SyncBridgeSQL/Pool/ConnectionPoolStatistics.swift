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

/// The swift-metrics instruments of one pool: OpenTelemetry's connection-pool metrics where it
/// names one, SyncBridge's own (`syncbridge.pool.*`) for the rest.
struct PoolMetrics: Sendable {
    /// `db.client.connection.count`, state `idle`.
    let idle: Meter
    /// `db.client.connection.count`, state `used`.
    let leased: Meter
    /// `db.client.connection.pending_requests`.
    let waiting: Meter
    /// `db.client.connection.wait_time`.
    let acquireDuration: Timer
    /// `db.client.connection.timeouts`.
    let acquireTimeouts: Counter
    /// `db.client.connection.create_time`.
    let connectDuration: Timer
    let connectionsOpened: Counter
    let connectionsClosed: Counter
    let connectFailures: Counter
    let connectFailedLeases: Counter
    let circuitOpen: Meter

    init(name: String, configuration: ConnectionPoolConfiguration, factory: any MetricsFactory) {
        let pool = ("db.client.connection.pool.name", name)
        let dimensions = [pool]
        idle = Meter(
            label: "db.client.connection.count",
            dimensions: [pool, ("db.client.connection.state", "idle")],
            factory: factory
        )
        leased = Meter(
            label: "db.client.connection.count",
            dimensions: [pool, ("db.client.connection.state", "used")],
            factory: factory
        )
        waiting = Meter(label: "db.client.connection.pending_requests", dimensions: dimensions, factory: factory)
        acquireDuration = Timer(
            label: "db.client.connection.wait_time",
            dimensions: dimensions,
            preferredDisplayUnit: .seconds,
            factory: factory
        )
        acquireTimeouts = Counter(label: "db.client.connection.timeouts", dimensions: dimensions, factory: factory)
        connectDuration = Timer(
            label: "db.client.connection.create_time",
            dimensions: dimensions,
            preferredDisplayUnit: .seconds,
            factory: factory
        )
        Meter(label: "db.client.connection.max", dimensions: dimensions, factory: factory)
            .set(configuration.maximumConnections)
        Meter(label: "db.client.connection.idle.min", dimensions: dimensions, factory: factory)
            .set(configuration.minimumConnections)
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
