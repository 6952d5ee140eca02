import DequeModule
import SyncBridge

/// The state of a connection pool: idle and leased connections, connection attempts in flight,
/// tasks waiting for a connection, and the lifecycle.
///
/// A pure state machine: each event returns the actions its owner (``ConnectionPool``) performs
/// outside the lock — hand a connection to a waiter, open or close a connection, fail a waiter.
/// Time is passed in (`now`, monotonic nanoseconds), so tests drive it without clocks.
struct ConnectionPoolState<Connection: AnyObject & Sendable> {
    typealias WaiterID = UInt64

    /// A connection the pool owns.
    struct Entry: Sendable {
        let connection: Connection
        let id: UInt64
        let createdAt: UInt64
        var lastUsedAt: UInt64
    }

    struct Limits {
        var minimumConnections: Int
        var maximumConnections: Int
        var idleTimeout: UInt64
        var maximumLifetime: UInt64
        var healthCheckAfterIdle: UInt64
        var initialBackoff: UInt64
        var maximumBackoff: UInt64
    }

    enum Lifecycle: Equatable {
        case running
        case shuttingDown
        case shutDown
    }

    /// Why a waiter got no connection.
    enum Failure {
        case shutDown
        case timedOut
        case cancelled
        /// A deadlock detector in throw mode ended the wait.
        case deadlock
    }

    enum Action {
        /// Give `entry` to the waiter.
        case lease(Entry, to: WaiterID)
        /// Check `entry` (it sat idle a while) before giving it to the waiter; report with
        /// `healthChecked`.
        case checkHealth(Entry, for: WaiterID)
        /// Open a connection, after `delay` nanoseconds; report with `connected` or
        /// `connectFailed`.
        case connect(afterDelay: UInt64)
        /// Close a connection the pool no longer keeps.
        case close(Connection)
        /// Resume the waiter with an error.
        case fail(WaiterID, Failure)
        /// The pool is shut down: resume everyone waiting for that.
        case shutdownComplete
    }

    private(set) var limits: Limits
    private(set) var idle: [Entry] = []
    private(set) var leased: [UInt64: Entry] = [:]
    private(set) var connecting = 0
    private(set) var waiters = Deque<WaiterID>()
    private(set) var lifecycle = Lifecycle.running
    private(set) var consecutiveFailures = 0
    /// Connections being health-checked for a waiter.
    private(set) var checking = 0
    private var nextConnectionID: UInt64 = 0

    init(limits: Limits) {
        precondition(limits.maximumConnections > 0, "a pool needs at least one connection")
        precondition(limits.minimumConnections <= limits.maximumConnections)
        self.limits = limits
    }

    /// Connections that exist or are being opened.
    var totalConnections: Int { idle.count + leased.count + connecting + checking }

    /// Whether a waiter can be served without a leased connection coming back: one is idle, being
    /// opened or checked, or the pool is below its maximum.
    var canServeWithoutRelease: Bool {
        !idle.isEmpty || connecting > 0 || checking > 0 || totalConnections < limits.maximumConnections
    }

    // MARK: Events

    /// A task wants a connection.
    mutating func lease(_ waiter: WaiterID, now: UInt64) -> [Action] {
        guard lifecycle == .running else { return [.fail(waiter, .shutDown)] }
        var actions: [Action] = []
        while let entry = idle.popLast() {
            if now &- entry.createdAt >= limits.maximumLifetime {
                actions.append(.close(entry.connection))
                continue
            }
            if now &- entry.lastUsedAt >= limits.healthCheckAfterIdle {
                checking += 1
                actions.append(.checkHealth(entry, for: waiter))
            } else {
                var entry = entry
                entry.lastUsedAt = now
                leased[entry.id] = entry
                actions.append(.lease(entry, to: waiter))
            }
            return actions
        }
        waiters.append(waiter)
        actions += connectIfNeeded()
        return actions
    }

    /// The health check of an idle connection finished.
    mutating func healthChecked(_ entry: Entry, healthy: Bool, for waiter: WaiterID, now: UInt64) -> [Action] {
        checking -= 1
        if healthy && lifecycle == .running {
            var entry = entry
            entry.lastUsedAt = now
            leased[entry.id] = entry
            return [.lease(entry, to: waiter)]
        }
        // The waiter asks again, at the front of the queue.
        var actions: [Action] = [.close(entry.connection)]
        guard lifecycle == .running else {
            actions.append(.fail(waiter, .shutDown))
            return actions + finishShutdownIfDone()
        }
        waiters.prepend(waiter)
        actions += serveWaiters(now: now)
        return actions
    }

    /// A connection attempt succeeded.
    mutating func connected(_ connection: Connection, now: UInt64) -> [Action] {
        connecting -= 1
        consecutiveFailures = 0
        nextConnectionID += 1
        let entry = Entry(connection: connection, id: nextConnectionID, createdAt: now, lastUsedAt: now)
        guard lifecycle == .running else {
            return [.close(connection)] + finishShutdownIfDone()
        }
        if let waiter = waiters.popFirst() {
            leased[entry.id] = entry
            return [.lease(entry, to: waiter)] + connectIfNeeded()
        }
        idle.append(entry)
        return connectIfNeeded()
    }

    /// A connection attempt failed; the next one waits for an exponential backoff.
    mutating func connectFailed(now: UInt64) -> [Action] {
        connecting -= 1
        consecutiveFailures += 1
        guard lifecycle == .running else { return finishShutdownIfDone() }
        return connectIfNeeded()
    }

    /// A leased connection came back. `reusable` is false when it broke.
    mutating func released(_ entryID: UInt64, reusable: Bool, now: UInt64) -> [Action] {
        guard var entry = leased.removeValue(forKey: entryID) else {
            preconditionFailure("SyncBridge bug: released a connection the pool did not lease")
        }
        entry.lastUsedAt = now
        let expired = now &- entry.createdAt >= limits.maximumLifetime
        guard lifecycle == .running, reusable, !expired else {
            var actions: [Action] = [.close(entry.connection)]
            if lifecycle == .running {
                actions += connectIfNeeded()
            } else {
                actions += finishShutdownIfDone()
            }
            return actions
        }
        if let waiter = waiters.popFirst() {
            leased[entry.id] = entry
            return [.lease(entry, to: waiter)]
        }
        idle.append(entry)
        return []
    }

    /// A waiter gave up (timeout or cancellation). Nothing happens if it was already served.
    mutating func abandon(_ waiter: WaiterID, because failure: Failure) -> [Action] {
        guard let index = waiters.firstIndex(of: waiter) else { return [] }
        waiters.remove(at: index)
        return [.fail(waiter, failure)]
    }

    /// Periodic upkeep: closes connections idle too long (above the minimum) or too old, and
    /// opens connections up to the minimum.
    mutating func maintain(now: UInt64) -> [Action] {
        guard lifecycle == .running else { return [] }
        var actions: [Action] = []
        var kept: [Entry] = []
        var surplus = totalConnections - limits.minimumConnections
        for entry in idle {
            let expired = now &- entry.createdAt >= limits.maximumLifetime
            let stale = now &- entry.lastUsedAt >= limits.idleTimeout && surplus > 0
            if expired || stale {
                actions.append(.close(entry.connection))
                surplus -= 1
            } else {
                kept.append(entry)
            }
        }
        idle = kept
        return actions + connectIfNeeded()
    }

    /// Stops leasing: fails every waiter, closes idle connections, and completes once every
    /// leased connection has come back.
    mutating func shutdown() -> [Action] {
        guard lifecycle == .running else { return lifecycle == .shutDown ? [.shutdownComplete] : [] }
        lifecycle = .shuttingDown
        var actions: [Action] = waiters.map { .fail($0, .shutDown) }
        waiters.removeAll()
        actions += idle.map { .close($0.connection) }
        idle.removeAll()
        return actions + finishShutdownIfDone()
    }

    // MARK: Helpers

    /// Opens connections for waiters and up to the minimum, within the maximum.
    private mutating func connectIfNeeded() -> [Action] {
        guard lifecycle == .running else { return [] }
        let wanted = max(limits.minimumConnections - totalConnections, waiters.count - connecting)
        let room = limits.maximumConnections - totalConnections
        let count = max(0, min(wanted, room))
        guard count > 0 else { return [] }
        connecting += count
        return Array(repeating: .connect(afterDelay: backoff), count: count)
    }

    /// 0 after a success; then `initialBackoff` doubling per consecutive failure, capped.
    var backoff: UInt64 {
        guard consecutiveFailures > 0 else { return 0 }
        let shift = UInt64(min(consecutiveFailures - 1, 30))
        let (delay, overflow) = limits.initialBackoff.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? limits.maximumBackoff : min(delay, limits.maximumBackoff)
    }

    private mutating func serveWaiters(now: UInt64) -> [Action] {
        var actions: [Action] = []
        while !waiters.isEmpty, let entry = idle.popLast() {
            let waiter = waiters.removeFirst()
            var entry = entry
            entry.lastUsedAt = now
            leased[entry.id] = entry
            actions.append(.lease(entry, to: waiter))
        }
        return actions + connectIfNeeded()
    }

    private mutating func finishShutdownIfDone() -> [Action] {
        guard lifecycle == .shuttingDown, leased.isEmpty, connecting == 0, checking == 0 else { return [] }
        lifecycle = .shutDown
        return [.shutdownComplete]
    }
}
