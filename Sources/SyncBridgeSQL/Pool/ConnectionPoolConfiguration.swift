import SyncBridge

/// A connection a ``ConnectionPool`` can manage.
public protocol PooledConnection: AnyObject, Sendable {
    /// A cheap, local answer: `false` once the connection is known to be broken.
    var isUsable: Bool { get }
    /// A round trip to the server (`SELECT 1`); run before reusing a connection that sat idle.
    func checkHealth() async -> Bool
    /// Closes the connection.
    func close() async
}

/// How a ``ConnectionPool`` sizes and refreshes itself.
public struct ConnectionPoolConfiguration: Sendable, Hashable {
    /// Connections kept open even when idle. Default 0.
    public var minimumConnections = 0
    /// The most connections open at once. Default 8.
    public var maximumConnections = 8
    /// How long a task waits for a connection before ``ConnectionPoolError/Code/acquireTimeout``.
    /// Default 10 s.
    public var acquireTimeout: Duration = .seconds(10)
    /// Idle connections above the minimum are closed after this long. Default 60 s.
    public var idleTimeout: Duration = .seconds(60)
    /// Connections are replaced after this long, so that server-side state and memory do not
    /// build up forever. Default 30 minutes.
    public var maximumLifetime: Duration = .seconds(30 * 60)
    /// A connection idle for this long is checked with a round trip before it is leased. Default
    /// 10 s.
    public var healthCheckAfterIdle: Duration = .seconds(10)
    /// The wait before reconnecting after a failed attempt; doubles with each consecutive
    /// failure. Default 100 ms.
    public var initialBackoff: Duration = .milliseconds(100)
    /// The longest wait between reconnection attempts. Default 1 s: while the server is down,
    /// leases fail at once with the connection error, and the pool probes it this often, so it
    /// serves again within about this long of the server accepting connections.
    public var maximumBackoff: Duration = .seconds(1)
    /// How often ``ConnectionPool/run()`` closes stale connections and opens missing ones.
    /// Default 1 s.
    public var maintenanceInterval: Duration = .seconds(1)

    /// The defaults.
    public init() {}
}

/// A task got no connection from a pool.
public struct ConnectionPoolError: Error, Hashable, CustomStringConvertible {
    /// Why. New codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case acquireTimeout
            case shutDown
        }

        private let base: Base

        /// No connection became free within the acquire timeout.
        public static let acquireTimeout = Code(base: .acquireTimeout)
        /// The pool is shutting down or shut down.
        public static let shutDown = Code(base: .shutDown)

        /// The code's name.
        public var description: String {
            switch base {
            case .acquireTimeout: "acquireTimeout"
            case .shutDown: "shutDown"
            }
        }
    }

    /// Why.
    public let code: Code
    /// The pool's name.
    public let poolName: String
    /// The pool's maximum size.
    public let maximumConnections: Int
    /// Connections open or being opened when the error happened.
    public let openConnections: Int
    /// Connections leased to tasks when the error happened.
    public let busyConnections: Int
    /// Tasks waiting for a connection when the error happened.
    public let waitingTasks: Int
    /// The acquire timeout that passed.
    public let timeout: Duration?
    /// Why the last connection attempt failed, if it did.
    public let lastConnectionError: String?

    /// The pool's size, how many connections were busy, and what to do.
    public var description: String {
        switch code {
        case .acquireTimeout:
            var text =
                "pool '\(poolName)': no connection within \(timeout.map { "\($0)" } ?? "the timeout"): "
                + "\(busyConnections) of \(maximumConnections) connections busy, \(openConnections) open, "
                + "\(waitingTasks) tasks waiting"
            if let lastConnectionError { text += "; last connection attempt failed: \(lastConnectionError)" }
            return text + ". Raise maximumConnections, shorten what holds connections, or check the server."
        default:
            return "pool '\(poolName)' is shut down: it leases no more connections"
        }
    }
}
