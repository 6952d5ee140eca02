import DequeModule

/// The whole state of a connection pool: idle and leased connections, statement lanes, connection
/// attempts, health checks and closes in flight, tasks waiting for a connection, the timers, and
/// the lifecycle.
///
/// A pure state machine: each event returns the actions its owner (``ConnectionPool``) performs
/// outside the lock — hand a connection to a waiter, open, check or close a connection, fail a
/// waiter, schedule or cancel a timer, announce that shutdown is complete. Time is passed in
/// (`now`, monotonic nanoseconds) and timers come back as events, so tests drive the machine
/// without threads or clocks.
///
/// Not generic: the machine only keeps its connections and hands them back, so it holds them as
/// `AnyObject`s, and ``ConnectionPool`` casts them back to its own type. A generic machine,
/// unspecialised across the module boundary, made the Swift runtime look up its types' metadata
/// on every lease and release.
struct ConnectionPoolState {
    typealias WaiterID = UInt64
    typealias EntryID = UInt64
    /// A connection, as the machine keeps it.
    typealias Connection = any AnyObject & Sendable

    /// A connection the pool owns.
    struct Entry: Sendable {
        let connection: Connection
        let id: EntryID
        let createdAt: UInt64
        var lastUsedAt: UInt64
        /// The I/O thread that serves the connection (``IOThread/affinity``), or 0: tasks that
        /// run on that thread get such a connection first, so that none has to wake another
        /// thread.
        var affinity: UInt = 0
    }

    /// The configuration, in nanoseconds.
    struct Limits {
        var minimumConnections: Int
        var maximumConnections: Int
        var acquireTimeout: UInt64
        var idleTimeout: UInt64
        var maximumLifetime: UInt64
        var healthCheckAfterIdle: UInt64
        var initialBackoff: UInt64
        var maximumBackoff: UInt64
        var maintenanceInterval: UInt64
    }

    enum Lifecycle: Equatable {
        case running
        case shuttingDown
        case shutDown
    }

    /// What a task asks the pool for.
    enum Demand: Equatable {
        /// A connection of its own, until it releases it.
        case exclusive
        /// A place for one statement: a connection of its own while the pool can lease one;
        /// otherwise a place in the queue of the least loaded connection already running single
        /// statements (a *lane*), as long as no task waits for a connection of its own.
        case statement
    }

    /// A task waiting for a connection.
    struct Waiter: Equatable {
        let id: WaiterID
        let demand: Demand
    }

    /// Why a waiter got no connection.
    enum Failure: Equatable {
        case shutDown
        case timedOut
        case cancelled
        /// A deadlock detector in throw mode ended the wait.
        case deadlock
        /// No connection could be opened and none is left to serve: the waiter gets the last
        /// connection attempt's error.
        case connectionFailed
    }

    /// A timer the owner runs; when it fires, the owner reports it with ``timerFired(_:now:)``.
    enum Timer: Hashable {
        /// A waiter's acquire timeout.
        case acquireTimeout(WaiterID)
        /// The end of the backoff after a failed connection attempt.
        case reconnect
        /// Periodic upkeep: stale connections closed, the minimum kept open.
        case maintenance
    }

    enum Action {
        /// Give `entry` to the waiter: a connection of its own, or a new lane.
        case lease(Entry, to: WaiterID)
        /// The waiter's statement joins the lane of `entry`.
        case share(Entry, with: WaiterID)
        /// Check `entry` (it sat idle a while) before giving it to the waiter; report with
        /// ``healthChecked(_:healthy:for:now:)``.
        case checkHealth(Entry, for: WaiterID)
        /// Open a connection; report with ``connected(_:attemptStartedAt:now:)`` or
        /// ``connectFailed(now:)``.
        case connect
        /// Close a connection the pool no longer keeps; report with ``closed()``.
        case close(Connection)
        /// Resume the waiter with an error.
        case fail(WaiterID, Failure)
        /// Start `timer`, to fire at `deadline` (monotonic nanoseconds).
        case schedule(Timer, deadline: UInt64)
        /// Stop `timer`; it must not fire (a late firing is ignored).
        case cancel(Timer)
        /// The pool is shut down: resume everyone waiting for that.
        case shutdownComplete
    }

    private(set) var limits: Limits
    private(set) var idle: [Entry] = []
    private(set) var leased: [EntryID: Entry] = [:]
    /// Statements queued or running on each connection that serves as a lane.
    private(set) var lanes: [EntryID: Int] = [:]
    /// Lanes whose connection broke: no statement joins them any more (a broken connection fails
    /// its statements fast, and would otherwise look the least loaded); they close once their
    /// last statement is done.
    private(set) var brokenLanes: Set<EntryID> = []
    private(set) var connecting = 0
    /// Connections being health-checked for a waiter, with what the waiter asked for.
    private(set) var checks: [WaiterID: Demand] = [:]
    private(set) var closing = 0
    private(set) var waiters = Deque<Waiter>()
    private(set) var lifecycle = Lifecycle.running
    private(set) var consecutiveFailures = 0
    /// A reconnect timer is pending: no connection is opened before it fires.
    private(set) var isBackingOff = false
    /// Connection attempts fail and no connection is left: leases fail at once with the last
    /// attempt's error (while no attempt is in flight), and a probe attempt runs each time the
    /// backoff ends, until one succeeds.
    private(set) var isCircuitOpen = false
    /// When a leased connection last came back broken: idle connections that were last used
    /// before then are checked before they are leased (a server restart or a failover breaks them
    /// all, also those that sat idle).
    private(set) var lastBreakage: UInt64?
    /// ``started(now:)`` ran: the maintenance timer is kept scheduled.
    private(set) var isStarted = false
    /// Waiter ids handed out whose lease has not arrived yet.
    private var expected: Set<WaiterID> = []
    /// Waiters cancelled before their lease arrived: refused when it does.
    private var cancelledEarly: Set<WaiterID> = []
    private var nextWaiterID: WaiterID = 0
    private var nextConnectionID: EntryID = 0
    /// Whether a connection is known to be broken (``PooledConnection/isUsable`` is false). Asked
    /// of the lane a statement is about to join: a connection breaks on its I/O thread, and its
    /// lane must take no more statements from then on, not only once the task whose statement
    /// found it broken releases that statement (a cooperative thread's wake-up later, during
    /// which a lane that fails every statement at once looks the least loaded).
    private let isBroken: @Sendable (Connection) -> Bool

    init(limits: Limits, isBroken: @escaping @Sendable (Connection) -> Bool = { _ in false }) {
        precondition(limits.maximumConnections > 0, "a pool needs at least one connection")
        precondition(limits.minimumConnections <= limits.maximumConnections)
        self.limits = limits
        self.isBroken = isBroken
    }

    /// Connections that exist (idle, leased, being checked) or are being opened.
    var totalConnections: Int { idle.count + leased.count + connecting + checks.count }

    /// Whether a waiter can be served without a leased connection coming back: one is idle, being
    /// opened or checked, or the pool is below its maximum.
    var canServeWithoutRelease: Bool {
        !idle.isEmpty || connecting > 0 || !checks.isEmpty || totalConnections < limits.maximumConnections
    }

    // MARK: Events

    /// A new waiter id; the waiter must then ask with ``lease(_:demand:now:)`` (or be cancelled
    /// first, with ``cancel(_:because:)``).
    mutating func makeWaiterID() -> WaiterID {
        nextWaiterID += 1
        expected.insert(nextWaiterID)
        return nextWaiterID
    }

    /// The owner runs the pool: upkeep begins, and the minimum is opened.
    mutating func started(now: UInt64) -> [Action] {
        guard !isStarted, lifecycle == .running else { return [] }
        isStarted = true
        return [.schedule(.maintenance, deadline: now &+ limits.maintenanceInterval)] + connectIfNeeded()
    }

    /// A task asks for a connection; it gets one of `affinity` (``Entry/affinity``) first when
    /// one is idle, or, for a statement, a lane of one when it is not busier than the least
    /// loaded lane plus one.
    mutating func lease(_ waiter: WaiterID, demand: Demand, affinity: UInt = 0, now: UInt64) -> [Action] {
        expected.remove(waiter)
        if cancelledEarly.remove(waiter) != nil { return [.fail(waiter, .cancelled)] }
        guard lifecycle == .running else { return [.fail(waiter, .shutDown)] }
        if isCircuitOpen && connecting == 0 && idle.isEmpty { return [.fail(waiter, .connectionFailed)] }
        if demand == .statement, let entry = joinLane(preferring: affinity) { return [.share(entry, with: waiter)] }
        var actions: [Action] = []
        if affinity != 0, idle.last?.affinity != affinity,
            let index = idle.lastIndex(where: { $0.affinity == affinity })
        {
            idle.swapAt(index, idle.count - 1)
        }
        while let entry = idle.popLast() {
            if now &- entry.createdAt >= limits.maximumLifetime {
                actions.append(close(entry))
                continue
            }
            // Found over while idle (the server closed it: its I/O thread saw): gone, and the
            // others that sat idle through it are checked before use.
            if isBroken(entry.connection) {
                lastBreakage = now
                actions.append(close(entry))
                continue
            }
            if now &- entry.lastUsedAt >= limits.healthCheckAfterIdle || satIdleThroughBreakage(entry) {
                checks[waiter] = demand
                actions.append(.checkHealth(entry, for: waiter))
            } else {
                actions += hand(entry, to: Waiter(id: waiter, demand: demand), now: now)
            }
            return actions
        }
        return actions + enqueue(Waiter(id: waiter, demand: demand), now: now) + connectIfNeeded()
    }

    /// A statement joins the least loaded lane, when the pool can lease no connection and no task
    /// waits for one; `nil` otherwise. The same decision as ``lease(_:demand:now:)`` makes for a
    /// statement, without a waiter: the statement path's fast path under load.
    mutating func joinLane(preferring affinity: UInt = 0) -> Entry? {
        guard lifecycle == .running, idle.isEmpty, totalConnections >= limits.maximumConnections, waiters.isEmpty
        else { return nil }
        guard let entry = leastLoadedUsableLane(preferring: affinity) else { return nil }
        lanes[entry.id, default: 0] += 1
        return entry
    }

    /// The health check of an idle connection finished.
    mutating func healthChecked(_ entry: Entry, healthy: Bool, for waiter: WaiterID, now: UInt64) -> [Action] {
        guard let demand = checks.removeValue(forKey: waiter) else {
            preconditionFailure("SyncBridge bug: a health check the pool did not start")
        }
        if healthy && lifecycle == .running {
            return hand(entry, to: Waiter(id: waiter, demand: demand), now: now)
        }
        var actions = [close(entry)]
        guard lifecycle == .running else {
            actions.append(.fail(waiter, .shutDown))
            return actions + finishShutdownIfDone()
        }
        // The waiter asks again, at the front of the queue.
        actions += enqueue(Waiter(id: waiter, demand: demand), now: now, atFront: true)
        return actions + serveWaiters(now: now)
    }

    /// A connection attempt succeeded.
    ///
    /// - Parameters:
    ///   - attemptStartedAt: When the attempt began (`now` if not given). A connection whose
    ///     attempt began before a breakage the pool saw counts as having sat through it: a server
    ///     shutting down can accept the connection and end it before the pool hears of it, so it
    ///     is checked before its first lease from the idle list.
    ///   - now: The time of the report.
    mutating func connected(
        _ connection: Connection,
        affinity: UInt = 0,
        attemptStartedAt: UInt64? = nil,
        now: UInt64
    ) -> [Action] {
        connecting -= 1
        consecutiveFailures = 0
        isCircuitOpen = false
        nextConnectionID += 1
        let entry = Entry(
            connection: connection,
            id: nextConnectionID,
            createdAt: now,
            lastUsedAt: min(attemptStartedAt ?? now, now),
            affinity: affinity
        )
        guard lifecycle == .running else { return [close(entry)] + finishShutdownIfDone() }
        if let waiter = waiters.popFirst() {
            return hand(entry, to: waiter, now: now, wasQueued: true)
                + connectIfNeeded()
        }
        idle.append(entry)
        return connectIfNeeded()
    }

    /// A connection attempt failed: the next one waits for an exponential backoff.
    mutating func connectFailed(now: UInt64) -> [Action] {
        connecting -= 1
        consecutiveFailures += 1
        guard lifecycle == .running else { return finishShutdownIfDone() }
        var actions: [Action] = []
        // Nothing is left that could serve the waiters: they get the error now rather than at
        // their acquire timeout, and later leases fail fast until a probe attempt succeeds.
        if idle.isEmpty && leased.isEmpty && checks.isEmpty && connecting == 0 {
            isCircuitOpen = true
            for waiter in waiters {
                actions += [.fail(waiter.id, .connectionFailed), .cancel(.acquireTimeout(waiter.id))]
            }
            waiters.removeAll()
        }
        guard !isBackingOff, isCircuitOpen || connectionsWanted > 0 else { return actions }
        isBackingOff = true
        return actions + [.schedule(.reconnect, deadline: now &+ backoff)]
    }

    /// A connection leased to one task came back. `reusable` is false when it broke.
    mutating func released(_ entryID: EntryID, reusable: Bool, now: UInt64) -> [Action] {
        guard var entry = leased.removeValue(forKey: entryID) else {
            preconditionFailure("SyncBridge bug: released a connection the pool did not lease")
        }
        lanes[entryID] = nil
        brokenLanes.remove(entryID)
        if !reusable { lastBreakage = now }
        entry.lastUsedAt = now
        let expired = now &- entry.createdAt >= limits.maximumLifetime
        guard lifecycle == .running, reusable, !expired else {
            var actions = [close(entry)]
            actions += lifecycle == .running ? connectIfNeeded() : finishShutdownIfDone()
            return actions
        }
        if let waiter = waiters.popFirst() {
            return hand(entry, to: waiter, now: now, wasQueued: true)
        }
        idle.append(entry)
        return []
    }

    /// One statement on the lane of `entryID` ended; the lane's connection comes back when it was
    /// the last. `reusable` is false when the connection broke.
    mutating func statementFinished(on entryID: EntryID, reusable: Bool, now: UInt64) -> [Action] {
        guard let count = lanes[entryID] else {
            preconditionFailure("SyncBridge bug: a statement finished on a lane the pool does not have")
        }
        guard count == 1 else {
            lanes[entryID] = count - 1
            if !reusable { brokenLanes.insert(entryID) }
            return []
        }
        brokenLanes.remove(entryID)
        return released(entryID, reusable: reusable, now: now)
    }

    /// A waiter gives up (cancellation, or a deadlock detector ended its wait). A waiter cancelled
    /// before its lease arrived is refused when it does; one already served is not affected.
    mutating func cancel(_ waiter: WaiterID, because failure: Failure) -> [Action] {
        if expected.remove(waiter) != nil {
            cancelledEarly.insert(waiter)
            return []
        }
        guard let index = waiters.firstIndex(where: { $0.id == waiter }) else { return [] }
        waiters.remove(at: index)
        return [.fail(waiter, failure), .cancel(.acquireTimeout(waiter))]
    }

    /// A timer fired. Timers that were cancelled or are no longer wanted do nothing.
    mutating func timerFired(_ timer: Timer, now: UInt64) -> [Action] {
        switch timer {
        case .acquireTimeout(let waiter):
            guard let index = waiters.firstIndex(where: { $0.id == waiter }) else { return [] }
            waiters.remove(at: index)
            return [.fail(waiter, .timedOut)]
        case .reconnect:
            guard isBackingOff else { return [] }
            isBackingOff = false
            // An open circuit probes with one attempt even when nobody waits.
            if isCircuitOpen && connecting == 0 && connectionsWanted == 0 && lifecycle == .running {
                connecting += 1
                return [.connect]
            }
            return connectIfNeeded()
        case .maintenance:
            guard lifecycle == .running else { return [] }
            return maintain(now: now) + [.schedule(.maintenance, deadline: now &+ limits.maintenanceInterval)]
        }
    }

    /// A close the pool asked for finished.
    mutating func closed() -> [Action] {
        closing -= 1
        return finishShutdownIfDone()
    }

    /// Stops leasing: fails every waiter, closes idle connections, stops the timers, and completes
    /// once every leased connection has come back and every close has finished.
    mutating func shutdown() -> [Action] {
        guard lifecycle == .running else { return [] }
        lifecycle = .shuttingDown
        var actions: [Action] = []
        for waiter in waiters {
            actions += [.fail(waiter.id, .shutDown), .cancel(.acquireTimeout(waiter.id))]
        }
        waiters.removeAll()
        let idle = self.idle
        self.idle.removeAll()
        actions += idle.map { close($0) }
        if isStarted { actions.append(.cancel(.maintenance)) }
        if isBackingOff {
            isBackingOff = false
            actions.append(.cancel(.reconnect))
        }
        return actions + finishShutdownIfDone()
    }

    // MARK: Helpers

    /// Closes idle connections found over, idle too long (above the minimum) or too old, and
    /// opens connections up to the minimum.
    private mutating func maintain(now: UInt64) -> [Action] {
        var actions: [Action] = []
        var kept: [Entry] = []
        var surplus = totalConnections - limits.minimumConnections
        for entry in idle {
            let broken = isBroken(entry.connection)
            if broken { lastBreakage = now }
            let expired = now &- entry.createdAt >= limits.maximumLifetime
            let stale = now &- entry.lastUsedAt >= limits.idleTimeout && surplus > 0
            if broken || expired || stale {
                actions.append(close(entry))
                surplus -= 1
            } else {
                kept.append(entry)
            }
        }
        idle = kept
        return actions + connectIfNeeded()
    }

    /// Leases `entry` to `waiter` (a new lane for a statement); stops the waiter's acquire timer
    /// if it was queued.
    private mutating func hand(_ entry: Entry, to waiter: Waiter, now: UInt64, wasQueued: Bool = false) -> [Action] {
        var entry = entry
        entry.lastUsedAt = now
        leased[entry.id] = entry
        let actions: [Action] =
            wasQueued
            ? [.lease(entry, to: waiter.id), .cancel(.acquireTimeout(waiter.id))] : [.lease(entry, to: waiter.id)]
        if waiter.demand == .statement { lanes[entry.id] = 1 }
        // The statements now at the head of the queue may join lanes. Without this, after the
        // health checks of connections that sat idle, each released connection went to one queued
        // statement, the queue never emptied under load, and so no statement joined a lane again:
        // one statement per connection at a time until the load stopped.
        return actions + shareLanesWithQueuedStatements()
    }

    /// Queues `waiter` and starts its acquire timer.
    private mutating func enqueue(_ waiter: Waiter, now: UInt64, atFront: Bool = false) -> [Action] {
        if atFront { waiters.prepend(waiter) } else { waiters.append(waiter) }
        return [.schedule(.acquireTimeout(waiter.id), deadline: now &+ limits.acquireTimeout)]
    }

    private mutating func close(_ entry: Entry) -> Action {
        closing += 1
        return .close(entry.connection)
    }

    /// Connections to open: for waiters not covered by attempts in flight, and up to the minimum,
    /// within the maximum.
    private var connectionsWanted: Int {
        let wanted = max(limits.minimumConnections - totalConnections, waiters.count - connecting)
        return max(0, min(wanted, limits.maximumConnections - totalConnections))
    }

    /// Opens the connections wanted, unless a backoff is pending.
    private mutating func connectIfNeeded() -> [Action] {
        guard lifecycle == .running, !isBackingOff else { return [] }
        let count = connectionsWanted
        connecting += count
        return Array(repeating: .connect, count: count)
    }

    /// Whether `entry` was last used before a connection came back broken.
    private func satIdleThroughBreakage(_ entry: Entry) -> Bool {
        guard let lastBreakage else { return false }
        return entry.lastUsedAt <= lastBreakage
    }

    /// 0 after a success; then `initialBackoff` doubling per consecutive failure, capped.
    var backoff: UInt64 {
        guard consecutiveFailures > 0 else { return 0 }
        let shift = UInt64(min(consecutiveFailures - 1, 30))
        let (delay, overflow) = limits.initialBackoff.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? limits.maximumBackoff : min(delay, limits.maximumBackoff)
    }

    /// When a connection becomes a lane, the queued statements beyond the connections still being
    /// opened join the lanes that already run, least loaded first, instead of waiting for a
    /// connection each (a connection being health-checked is its own waiter's, not the queue's).
    /// Only statements at the head of the queue move: a task waiting for a connection of its own
    /// keeps its turn.
    ///
    /// While connections are still being opened, a lane takes no more than its share of the
    /// statements, counted over every lane and every connection on its way: the rest wait for
    /// those connections. Otherwise a burst at start-up (200 tasks, 32 connections) piled every
    /// queued statement onto the first connection to open — a queue of 168 behind one socket,
    /// all of them failing together if that connection broke.
    private mutating func shareLanesWithQueuedStatements() -> [Action] {
        var actions: [Action] = []
        var statementsOnLanes = connecting > 0 ? lanes.values.reduce(0, +) : 0
        while let waiter = waiters.first, waiter.demand == .statement, waiters.count > connecting,
            idle.isEmpty, totalConnections >= limits.maximumConnections,
            let entry = leastLoadedUsableLane()
        {
            if connecting > 0 {
                let places = lanes.count + connecting
                let share = (statementsOnLanes + waiters.count + places - 1) / places
                guard lanes[entry.id, default: 0] < share else { break }
                statementsOnLanes += 1
            }
            waiters.removeFirst()
            lanes[entry.id, default: 0] += 1
            actions += [.share(entry, with: waiter.id), .cancel(.acquireTimeout(waiter.id))]
        }
        return actions
    }

    /// The lane a statement joins (see ``leastLoadedLane(preferring:)``), once its connection says
    /// it has not broken: a lane whose connection has is noted broken, and the next one is asked.
    private mutating func leastLoadedUsableLane(preferring affinity: UInt = 0) -> Entry? {
        while let laneID = leastLoadedLane(preferring: affinity), let entry = leased[laneID] {
            guard isBroken(entry.connection) else { return entry }
            brokenLanes.insert(laneID)
        }
        return nil
    }

    /// The lane with the fewest statements, of those whose connection has not broken; with an
    /// `affinity`, the least loaded lane of that affinity when it has at most one statement more.
    /// A lane has at least one statement, so the first with one ends the search.
    private func leastLoadedLane(preferring affinity: UInt = 0) -> EntryID? {
        var least: (id: EntryID, count: Int)?
        var preferred: (id: EntryID, count: Int)?
        for (id, count) in lanes where brokenLanes.isEmpty || !brokenLanes.contains(id) {
            if affinity != 0, count < preferred?.count ?? .max, leased[id]?.affinity == affinity {
                if count == 1 { return id }
                preferred = (id, count)
            }
            if count < least?.count ?? .max {
                least = (id, count)
                if count == 1 && affinity == 0 { return id }
            }
        }
        if let preferred, let least, preferred.count <= least.count + 1 { return preferred.id }
        return least?.id
    }

    private mutating func serveWaiters(now: UInt64) -> [Action] {
        var actions: [Action] = []
        while !waiters.isEmpty, let entry = idle.popLast() {
            actions += hand(entry, to: waiters.removeFirst(), now: now, wasQueued: true)
        }
        return actions + connectIfNeeded()
    }

    private mutating func finishShutdownIfDone() -> [Action] {
        guard lifecycle == .shuttingDown, leased.isEmpty, connecting == 0, checks.isEmpty, closing == 0 else {
            return []
        }
        lifecycle = .shutDown
        return [.shutdownComplete]
    }
}
