import DequeModule
public import Logging
public import Metrics
public import ServiceLifecycle
package import SyncBridge

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
    /// The longest wait between reconnection attempts. Default 10 s.
    public var maximumBackoff: Duration = .seconds(10)
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

/// A pool of connections shared by many tasks: leases one connection per task, opens
/// connections on demand up to a maximum, reuses idle ones (checking those idle a while), replaces
/// old and broken ones, reconnects with backoff, and shuts down gracefully.
///
/// Both database facades use it (`PostgresClient`, `MariaDBClient`); it works for any
/// ``PooledConnection``.
///
/// Run it as a `Service` in a `ServiceGroup`, or call ``run()`` in a task of your own: ``run()``
/// does the upkeep (closing stale connections, keeping the minimum open) and, when the service
/// group shuts down or the task is cancelled, shuts the pool down. Leasing works without it.
public final class ConnectionPool<Connection: PooledConnection>: Sendable, Service {
    /// The pool's name, for logs, metrics and errors.
    public let name: String
    /// The pool's configuration.
    public let configuration: ConnectionPoolConfiguration
    private let connect: @Sendable () async throws -> Connection
    private let shared: Locked<Shared>
    private let logger: Logger
    private let metrics: PoolMetrics

    private struct Shared {
        var state: ConnectionPoolState<Connection>
        var continuations: [UInt64: UnsafeContinuation<ConnectionPoolState<Connection>.Entry, any Error>] = [:]
        var timers: [UInt64: Task<Void, Never>] = [:]
        var cancelledBeforeWaiting: Set<UInt64> = []
        var nextWaiterID: UInt64 = 0
        var lastConnectionError: String?
        var pendingCloses = 0
        var shutdownComplete = false
        var shutdownWaiters: [UnsafeContinuation<Void, Never>] = []
        /// The errors of waits a deadlock detector ended (throw mode), by waiter.
        var deadlockErrors: [UInt64: DeadlockError] = [:]
        /// Who holds each leased connection, by entry, while a deadlock detector runs.
        var holders: [UInt64: WaitGraph.Holding] = [:]
        /// When a tracked lease last came back.
        var lastRelease: UInt64 = 0
    }

    /// The pool as the deadlock detector's wait-for graph names it.
    private let resourceID = WaitGraph.newResourceID()
    private var resourceDescription: String { waitDescription }

    /// Creates a pool; no connection is opened until one is needed (or ``run()`` keeps the
    /// minimum open).
    ///
    /// - Parameters:
    ///   - name: Names the pool in logs, metrics and errors.
    ///   - configuration: Sizes and timeouts.
    ///   - logger: Receives connection lifecycle events.
    ///   - metricsFactory: Receives the pool's metrics (`syncbridge.pool.*`).
    ///   - connect: Opens one connection.
    public init(
        name: String,
        configuration: ConnectionPoolConfiguration = .init(),
        logger: Logger = Logger(label: "SyncBridge.ConnectionPool"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        connect: @escaping @Sendable () async throws -> Connection
    ) {
        self.name = name
        self.configuration = configuration
        self.connect = connect
        self.logger = logger
        self.metrics = PoolMetrics(name: name, factory: metricsFactory)
        let limits = ConnectionPoolState<Connection>.Limits(
            minimumConnections: configuration.minimumConnections,
            maximumConnections: configuration.maximumConnections,
            idleTimeout: UInt64(configuration.idleTimeout.nanosecondCount),
            maximumLifetime: UInt64(configuration.maximumLifetime.nanosecondCount),
            healthCheckAfterIdle: UInt64(configuration.healthCheckAfterIdle.nanosecondCount),
            initialBackoff: UInt64(configuration.initialBackoff.nanosecondCount),
            maximumBackoff: UInt64(configuration.maximumBackoff.nanosecondCount)
        )
        self.shared = Locked(Shared(state: ConnectionPoolState(limits: limits)))
    }

    // MARK: Leasing

    /// Leases a connection for the duration of `body`, then returns it to the pool (or, if it
    /// broke, closes it and opens a replacement).
    ///
    /// While a ``DeadlockDetector`` runs, the lease is recorded (task-locally and in the detector's
    /// graph): asking the same pool for a second connection inside `body` while the pool cannot
    /// grow is reported at once with both lease sites, and so is a cycle of tasks leasing from
    /// several pools in opposite orders. The record is a task-local, which child tasks and
    /// `Task {}` inherit: a `Task {}` started in `body` that leases from the same exhausted pool
    /// is reported as nested too, although `body` does not wait for it (use `Task.detached` for
    /// work that outlives the lease).
    ///
    /// - Parameters:
    ///   - fileID: The lease site, for reports; leave the default.
    ///   - line: The lease site, for reports; leave the default.
    ///   - body: The work; the connection is this task's alone until `body` returns.
    /// - Returns: What `body` returns.
    /// - Throws: ``ConnectionPoolError`` when no connection becomes free within the acquire
    ///   timeout or the pool is shut down; `CancellationError` when the task is cancelled while
    ///   waiting; `DeadlockError` when a detector in throw mode finds the wait can never end;
    ///   what `body` throws.
    public func withConnection<Result>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: (Connection) async throws -> sending Result
    ) async throws -> sending Result {
        try await withConnection(at: CallSite(fileID: fileID, line: line), body)
    }

    /// ``withConnection(fileID:line:_:)`` for a call site already made.
    package func withConnection<Result>(
        at callSite: CallSite,
        _ body: (Connection) async throws -> sending Result
    ) async throws -> sending Result {
        let lease = try await leaseConnection(at: callSite)
        let result: Result
        do {
            if let holder = lease.holder {
                let record = PoolLeaseRecord(pool: resourceID, callSite: lease.callSite, party: holder, next: PoolLeaseRecord.current)
                let transfer = try await PoolLeaseRecord.$current.withValue(record) {
                    SendingTransfer(value: try await body(lease.connection))
                }
                result = transfer.value
            } else {
                result = try await body(lease.connection)
            }
        } catch {
            release(lease)
            throw error
        }
        release(lease)
        return result
    }

    /// A leased connection that must be handed back with ``release(_:)`` exactly once.
    package struct Lease: Sendable {
        let entry: ConnectionPoolState<Connection>.Entry
        /// Whether the deadlock detector knows its holder.
        let tracked: Bool
        /// Who leased it, while a detector runs.
        let holder: Party?
        /// Where it was leased.
        let callSite: CallSite
        /// The connection.
        package var connection: Connection { entry.connection }
    }

    /// Leases a connection; the caller must ``release(_:)`` it. Prefer ``withConnection(fileID:line:_:)``.
    ///
    /// - Parameters:
    ///   - callSite: Where the lease was asked for, for reports.
    ///   - sharedByStatements: The lease serves single statements of many tasks (a statement
    ///     lane), not the asking task: the deadlock detector sees it held by the lane, which
    ///     releases it when its statements end whatever any task waits for.
    package func leaseConnection(at callSite: CallSite, sharedByStatements: Bool = false) async throws -> Lease {
        guard WaitGraph.isActive else {
            return Lease(entry: try await lease(party: nil, callSite: callSite), tracked: false, holder: nil, callSite: callSite)
        }
        let party = Party.current
        let entry = try await lease(party: party, callSite: callSite)
        let holder = sharedByStatements ? Party.statementLane(entry.id) : party
        shared.withLock { $0.holders[entry.id] = WaitGraph.Holding(party: holder, callSite: callSite) }
        return Lease(entry: entry, tracked: true, holder: sharedByStatements ? nil : party, callSite: callSite)
    }

    /// Returns a connection from ``leaseConnection(at:)``.
    package func release(_ lease: Lease) {
        release(lease.entry, tracked: lease.tracked)
    }

    private func lease(party: Party?, callSite: CallSite) async throws -> ConnectionPoolState<Connection>.Entry {
        let waiter = shared.withLock { shared in
            shared.nextWaiterID += 1
            return shared.nextWaiterID
        }
        let start = monotonicNow()
        let wait: PoolWaitSlot? = party == nil ? nil : PoolWaitSlot()
        defer { wait?.end() }
        let entry = try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                let (actions, waiting, canGrow) = shared.withLock { shared -> ([ConnectionPoolState<Connection>.Action], Bool, Bool) in
                    shared.continuations[waiter] = continuation
                    if shared.cancelledBeforeWaiting.remove(waiter) != nil {
                        return ([.fail(waiter, .cancelled)], false, true)
                    }
                    let actions = shared.state.lease(waiter, now: monotonicNow())
                    // A waiter that must wait was just appended to the queue (checked only while a
                    // deadlock detector tracks leases).
                    guard party != nil, shared.state.waiters.last == waiter else { return (actions, false, true) }
                    return (actions, true, shared.state.canServeWithoutRelease)
                }
                if let party, let wait, waiting {
                    wait.id = beginWait(waiter, party: party, callSite: callSite, canGrow: canGrow)
                }
                perform(actions)
                startTimerIfWaiting(waiter)
            }
        } onCancel: {
            let actions = shared.withLock { shared -> [ConnectionPoolState<Connection>.Action] in
                guard shared.continuations[waiter] != nil else {
                    shared.cancelledBeforeWaiting.insert(waiter)
                    return []
                }
                return shared.state.abandon(waiter, because: .cancelled)
            }
            perform(actions)
        }
        metrics.acquireDuration.recordNanoseconds(Int64(monotonicNow() - start))
        return entry
    }

    /// Enters a waiting lease in the detector's graph, after reporting a nested lease: the task
    /// already holds a connection of this pool, and the pool cannot grow.
    private func beginWait(_ waiter: UInt64, party: Party, callSite: CallSite, canGrow: Bool) -> UInt64? {
        let interrupt: @Sendable (DeadlockError) -> Void = { [weak self] error in
            guard let self else { return }
            let actions = self.shared.withLock { shared in
                shared.deadlockErrors[waiter] = error
                return shared.state.abandon(waiter, because: .deadlock)
            }
            self.perform(actions)
        }
        var reported = false
        if !canGrow, let outer = PoolLeaseRecord.current?.first(where: { $0.pool == resourceID }) {
            let report = DeadlockReport(
                pattern: .nestedPoolLease,
                headline: "a task that holds a connection of \(resourceDescription) asks it for another, and the pool cannot grow",
                chain: [
                    .init(party: party.label, action: "asks for a second connection of", object: resourceDescription, callSite: "\(callSite)"),
                    .init(party: "  while holding one, leased by \(outer.party)", action: "", object: "", callSite: "\(outer.callSite)"),
                    .init(party: "  every connection is leased;", action: "this wait ends only when another task releases one", object: "", callSite: nil),
                ],
                advice: "run the inner statement on the connection you already hold (pass it down), or lease once for the whole unit of work; with N such tasks at once the pool deadlocks",
                scopeID: WatchdogScope.current
            )
            if DeadlockDetector.report(report, refusing: true) == .throwError {
                var thrown = report
                thrown.thrown = true
                interrupt(DeadlockError(report: thrown))
                return nil
            }
            // Reported: the cycle it closes (when this task holds the only connections) is not
            // reported a second time.
            reported = true
        }
        return WaitGraph.beginWait(
            for: .object(resourceID),
            of: self,
            by: party,
            at: callSite,
            mayGrow: canGrow,
            alreadyReported: reported,
            interrupt: interrupt
        )
    }

    private func startTimerIfWaiting(_ waiter: UInt64) {
        let timeout = configuration.acquireTimeout
        shared.withLock { shared in
            guard shared.continuations[waiter] != nil else { return }
            shared.timers[waiter] = Task { [weak self] in
                guard (try? await Task.sleep(for: timeout)) != nil, let self else { return }
                let actions = self.shared.withLock { $0.state.abandon(waiter, because: .timedOut) }
                self.perform(actions)
            }
        }
    }

    private func release(_ entry: ConnectionPoolState<Connection>.Entry, tracked: Bool) {
        let reusable = entry.connection.isUsable
        let actions = shared.withLock { shared in
            if tracked {
                shared.holders[entry.id] = nil
                shared.lastRelease = monotonicNow()
            }
            return shared.state.released(entry.id, reusable: reusable, now: monotonicNow())
        }
        perform(actions)
    }

    // MARK: Performing actions

    private func perform(_ actions: [ConnectionPoolState<Connection>.Action]) {
        for action in actions {
            switch action {
            case .lease(let entry, let waiter):
                let continuation = shared.withLock { shared in
                    shared.timers.removeValue(forKey: waiter)?.cancel()
                    return shared.continuations.removeValue(forKey: waiter)
                }
                continuation?.resume(returning: entry)
            case .checkHealth(let entry, let waiter):
                Task {
                    let healthy = await entry.connection.checkHealth()
                    if !healthy {
                        self.logger.debug("an idle connection failed its health check", metadata: ["pool": "\(self.name)"])
                    }
                    let actions = self.shared.withLock {
                        $0.state.healthChecked(entry, healthy: healthy, for: waiter, now: monotonicNow())
                    }
                    self.perform(actions)
                }
            case .connect(let delay):
                Task {
                    if delay > 0 { try? await Task.sleep(for: .nanoseconds(Int64(delay))) }
                    do {
                        let connection = try await self.connect()
                        self.metrics.connectionsOpened.increment()
                        let actions = self.shared.withLock { $0.state.connected(connection, now: monotonicNow()) }
                        self.perform(actions)
                    } catch {
                        self.metrics.connectFailures.increment()
                        self.logger.warning(
                            "connection attempt failed",
                            metadata: ["pool": "\(self.name)", "error": "\(error)"]
                        )
                        let actions = self.shared.withLock { shared in
                            shared.lastConnectionError = "\(error)"
                            return shared.state.connectFailed(now: monotonicNow())
                        }
                        self.perform(actions)
                    }
                }
            case .close(let connection):
                shared.withLock { $0.pendingCloses += 1 }
                Task {
                    await connection.close()
                    self.metrics.connectionsClosed.increment()
                    let waiters = self.shared.withLock { shared -> [UnsafeContinuation<Void, Never>] in
                        shared.pendingCloses -= 1
                        return self.takeShutdownWaitersIfDone(&shared)
                    }
                    waiters.forEach { $0.resume() }
                }
            case .fail(let waiter, let failure):
                let (continuation, error) = shared.withLock { shared in
                    shared.timers.removeValue(forKey: waiter)?.cancel()
                    defer { shared.deadlockErrors[waiter] = nil }
                    return (shared.continuations.removeValue(forKey: waiter), makeError(failure, waiter: waiter, shared))
                }
                continuation?.resume(throwing: error)
            case .shutdownComplete:
                let waiters = shared.withLock { shared -> [UnsafeContinuation<Void, Never>] in
                    shared.shutdownComplete = true
                    return takeShutdownWaitersIfDone(&shared)
                }
                waiters.forEach { $0.resume() }
            }
        }
        recordGauges()
    }

    private func takeShutdownWaitersIfDone(_ shared: inout Shared) -> [UnsafeContinuation<Void, Never>] {
        guard shared.shutdownComplete, shared.pendingCloses == 0 else { return [] }
        defer { shared.shutdownWaiters = [] }
        return shared.shutdownWaiters
    }

    private func makeError(_ failure: ConnectionPoolState<Connection>.Failure, waiter: UInt64, _ shared: Shared) -> any Error {
        func poolError(_ code: ConnectionPoolError.Code, timeout: Duration?) -> ConnectionPoolError {
            ConnectionPoolError(
                code: code,
                poolName: name,
                maximumConnections: configuration.maximumConnections,
                openConnections: shared.state.totalConnections,
                busyConnections: shared.state.leased.count,
                waitingTasks: shared.state.waiters.count,
                timeout: timeout,
                lastConnectionError: shared.lastConnectionError
            )
        }
        switch failure {
        case .deadlock:
            return shared.deadlockErrors[waiter] ?? CancellationError()
        case .cancelled: return CancellationError()
        case .shutDown: return poolError(.shutDown, timeout: nil)
        case .timedOut:
            metrics.acquireTimeouts.increment()
            return poolError(.acquireTimeout, timeout: configuration.acquireTimeout)
        }
    }

    private func recordGauges() {
        let (idle, leased, waiting, canGrow) = shared.withLock {
            ($0.state.idle.count, $0.state.leased.count, $0.state.waiters.count, $0.state.canServeWithoutRelease)
        }
        if waiting > 0 && WaitGraph.isActive { WaitGraph.setMayGrow(.object(resourceID), canGrow) }
        metrics.idle.set(idle)
        metrics.leased.set(leased)
        metrics.waiting.set(waiting)
    }

    // MARK: Running and shutting down

    /// Keeps the pool in shape until the task is cancelled or the service group shuts down, then
    /// shuts the pool down (waiting for leased connections to come back).
    public func run() async throws {
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !isShuttingDown {
                try? await Task.sleep(for: configuration.maintenanceInterval)
                perform(shared.withLock { $0.state.maintain(now: monotonicNow()) })
            }
        } onGracefulShutdown: {
            Task { await self.shutdown() }
        }
        await shutdown()
    }

    private var isShuttingDown: Bool {
        shared.withLock { $0.state.lifecycle != .running }
    }

    /// Stops leasing (waiting tasks get ``ConnectionPoolError/Code/shutDown``), closes idle
    /// connections, waits for leased ones to come back and closes them too.
    public func shutdown() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let actions = shared.withLock { shared in
                shared.shutdownWaiters.append(continuation)
                return shared.state.shutdown()
            }
            perform(actions)
            let waiters = shared.withLock { takeShutdownWaitersIfDone(&$0) }
            waiters.forEach { $0.resume() }
        }
    }

    /// A snapshot of the pool's connections and waiters.
    public var statistics: ConnectionPoolStatistics {
        shared.withLock { shared in
            ConnectionPoolStatistics(
                idle: shared.state.idle.count,
                leased: shared.state.leased.count,
                connecting: shared.state.connecting,
                waiting: shared.state.waiters.count
            )
        }
    }
}

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

    init(name: String, factory: any MetricsFactory) {
        let dimensions = [("pool", name)]
        idle = Meter(label: "syncbridge.pool.idle", dimensions: dimensions, factory: factory)
        leased = Meter(label: "syncbridge.pool.leased", dimensions: dimensions, factory: factory)
        waiting = Meter(label: "syncbridge.pool.waiting", dimensions: dimensions, factory: factory)
        acquireDuration = Timer(label: "syncbridge.pool.acquire_duration", dimensions: dimensions, factory: factory)
        acquireTimeouts = Counter(label: "syncbridge.pool.acquire_timeouts", dimensions: dimensions, factory: factory)
        connectionsOpened = Counter(label: "syncbridge.pool.connections_opened", dimensions: dimensions, factory: factory)
        connectionsClosed = Counter(label: "syncbridge.pool.connections_closed", dimensions: dimensions, factory: factory)
        connectFailures = Counter(label: "syncbridge.pool.connect_failures", dimensions: dimensions, factory: factory)
    }
}

/// Monotonic nanoseconds.
func monotonicNow() -> UInt64 {
    monotonicNanoseconds()
}

extension ConnectionPool: WaitResource {
    /// `connection pool 'name' (N connections)`.
    package var waitDescription: String {
        let size = configuration.maximumConnections
        return "connection pool '\(name)' (\(size) connection\(size == 1 ? "" : "s"))"
    }

    /// The tasks that hold its connections.
    package func waitHolders() -> [WaitGraph.Holding] {
        shared.withLock { Array($0.holders.values) }
    }

    /// When a connection last came back.
    package var waitLastRelease: UInt64 { shared.withLock { $0.lastRelease } }
}

/// The pool leases the current task holds, newest first, while a deadlock detector runs: how a
/// second lease from the same pool is recognised as nested.
package final class PoolLeaseRecord: Sendable {
    let pool: UInt64
    let callSite: CallSite
    let party: Party
    let next: PoolLeaseRecord?

    init(pool: UInt64, callSite: CallSite, party: Party, next: PoolLeaseRecord?) {
        self.pool = pool
        self.callSite = callSite
        self.party = party
        self.next = next
    }

    @TaskLocal static var current: PoolLeaseRecord?

    func first(where predicate: (PoolLeaseRecord) -> Bool) -> PoolLeaseRecord? {
        var node: PoolLeaseRecord? = self
        while let record = node {
            if predicate(record) { return record }
            node = record.next
        }
        return nil
    }
}

/// The wait-graph entry of one waiting lease, written inside the continuation's closure and ended
/// by the waiting task after it resumes.
private final class PoolWaitSlot: @unchecked Sendable {
    // Safe to share: written before the continuation can resume the task (inside its closure, on
    // the waiting task) and read after the task resumed; the continuation orders the two.
    var id: UInt64?

    func end() {
        if let id { WaitGraph.endWait(id) }
    }
}

/// Carries a `sending` result out of `TaskLocal.withValue`, whose result is not `sending`.
private struct SendingTransfer<Value>: @unchecked Sendable {
    // Safe: the value comes from a `sending` result, so nothing else refers to it; it is moved
    // out once, on the same task.
    let value: Value
}
