public import Logging
public import Metrics
public import ServiceLifecycle
package import SyncBridge

/// A pool of connections shared by many tasks: leases one connection per task, opens
/// connections on demand up to a maximum, reuses idle ones (checking those idle a while), replaces
/// old and broken ones, reconnects with backoff, and shuts down gracefully.
///
/// Both database facades use it (`PostgresClient`, `MariaDBClient`); it works for any
/// ``PooledConnection``.
///
/// Run it as a `Service` in a `ServiceGroup`, or call ``run()`` in a task of your own: the pool's
/// work — opening, checking and closing connections, its timers (acquire timeouts, reconnect
/// backoff, upkeep) — runs as child tasks of ``run()``, and when the service group shuts down or
/// the task is cancelled, ``run()`` shuts the pool down and returns once every connection is
/// closed. A pool that is leased from before anything runs it starts ``run()`` itself, in a task
/// of its own, and logs that it did; ``shutdown()`` ends it.
public final class ConnectionPool<Connection: PooledConnection>: Sendable, Service {
    typealias State = ConnectionPoolState
    typealias Shared = ConnectionPoolShared
    typealias LeaseRecord = ConnectionPoolLeaseRecord
    typealias Job = ConnectionPoolJob
    typealias Runner = ConnectionPoolRunner

    /// The pool's name, for logs, metrics and errors.
    public let name: String
    /// The pool's configuration.
    public let configuration: ConnectionPoolConfiguration
    private let connect: @Sendable () async throws -> Connection
    let shared: Locked<Shared>
    private let logger: Logger
    private let metrics: PoolMetrics

    /// The pool as the deadlock detector's wait-for graph names it.
    let resourceID = WaitGraph.newResourceID()

    /// Creates a pool; no connection is opened until one is needed (or ``run()`` keeps the
    /// minimum open).
    ///
    /// - Parameters:
    ///   - name: Names the pool in logs, metrics and errors.
    ///   - configuration: Sizes and timeouts.
    ///   - logger: Receives connection lifecycle events.
    ///   - metricsFactory: Receives the pool's metrics (`db.client.connection.*`, `syncbridge.pool.*`).
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
        self.metrics = PoolMetrics(name: name, configuration: configuration, factory: metricsFactory)
        func nanoseconds(_ duration: Duration) -> UInt64 { UInt64(max(0, duration.nanosecondCount)) }
        let limits = State.Limits(
            minimumConnections: configuration.minimumConnections,
            maximumConnections: configuration.maximumConnections,
            acquireTimeout: nanoseconds(configuration.acquireTimeout),
            idleTimeout: nanoseconds(configuration.idleTimeout),
            maximumLifetime: nanoseconds(configuration.maximumLifetime),
            healthCheckAfterIdle: nanoseconds(configuration.healthCheckAfterIdle),
            initialBackoff: nanoseconds(configuration.initialBackoff),
            maximumBackoff: nanoseconds(configuration.maximumBackoff),
            maintenanceInterval: nanoseconds(configuration.maintenanceInterval)
        )
        self.shared = Locked(
            Shared(state: State(limits: limits) { !unsafeDowncast($0, to: Connection.self).isUsable })
        )
        SnapshotRegistry.add(self)
    }

    deinit {
        SnapshotRegistry.remove(ObjectIdentifier(self))
    }

    // MARK: Leasing

    /// Leases a connection for the duration of `body`, then returns it to the pool (or, if it
    /// broke, closes it and opens a replacement).
    ///
    /// While a `DeadlockDetector` runs, the lease is recorded (task-locally and in the detector's
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
            result = try await withLeaseRecorded(lease) { try await body(lease.connection) }
        } catch {
            release(lease)
            throw error
        }
        release(lease)
        return result
    }

    /// Runs one statement's `body` on a connection: a connection of its own while the pool can
    /// lease one, otherwise a place in the queue of the least loaded connection already running
    /// single statements, so that connections run statements back to back under load and none
    /// idles while the next task is being scheduled. Statements do not join busy connections
    /// while a task waits for a connection of its own, so transactions are not starved.
    package func runStatement<Result: Sendable>(
        at callSite: CallSite,
        _ body: (Connection) async throws -> Result
    ) async throws -> Result {
        let lease = try await leaseConnection(at: callSite, demand: .statement)
        do {
            let result = try await body(lease.connection)
            release(lease)
            return result
        } catch {
            release(lease)
            throw error
        }
    }

    /// A leased connection that must be handed back with ``release(_:)`` exactly once.
    package struct Lease: Sendable {
        let entry: State.Entry
        /// A statement's place on a lane, or a connection of the task's own.
        let demand: State.Demand
        /// Whether the deadlock detector knows its holder.
        let tracked: Bool
        /// Who leased it, while a detector runs.
        let holder: Party?
        /// Where it was leased.
        let callSite: CallSite
        /// The connection.
        package var connection: Connection { unsafeDowncast(entry.connection, to: Connection.self) }
    }

    /// Leases a connection; the caller must ``release(_:)`` it. Prefer ``withConnection(fileID:line:_:)``.
    ///
    /// - Parameters:
    ///   - callSite: Where the lease was asked for, for reports.
    package func leaseConnection(at callSite: CallSite) async throws -> Lease {
        try await leaseConnection(at: callSite, demand: .exclusive)
    }

    private func leaseConnection(at callSite: CallSite, demand: State.Demand) async throws -> Lease {
        guard WaitGraph.isActive else {
            let entry = try await lease(demand, party: nil, callSite: callSite)
            return Lease(entry: entry, demand: demand, tracked: false, holder: nil, callSite: callSite)
        }
        let party = Party.current
        let entry = try await lease(demand, party: party, callSite: callSite)
        // A lane serves single statements of many tasks, not the asking task: the detector sees
        // it held by the lane, which releases it when its statements end whatever any task
        // waits for.
        let holder = demand == .statement ? Party.statementLane(entry.id) : party
        shared.withLock { $0.holders[entry.id] = WaitGraph.Holding(party: holder, callSite: callSite) }
        return Lease(
            entry: entry,
            demand: demand,
            tracked: true,
            holder: demand == .statement ? nil : party,
            callSite: callSite
        )
    }

    /// Returns a connection from ``leaseConnection(at:)``, or ends a statement's place on a lane.
    package func release(_ lease: Lease) {
        let reusable = lease.connection.isUsable
        let (actions, counts) = shared.withLock { shared in
            let now = monotonicNow()
            let before = (shared.state.idle.count, shared.state.leased.count)
            // The lease ends (a lane with its last statement): its record goes before the state
            // machine may hand the connection to a waiter, whose answer records the new lease.
            if lease.demand == .exclusive || shared.state.lanes[lease.entry.id] == 1 {
                shared.leaseRecords[lease.entry.id] = nil
            }
            let actions =
                lease.demand == .statement
                ? shared.state.statementFinished(on: lease.entry.id, reusable: reusable, now: now)
                : shared.state.released(lease.entry.id, reusable: reusable, now: now)
            if lease.tracked {
                // Progress for the deadlock detector's stuck-wait check, also when the state
                // machine hands the connection straight to a waiter (a busy pool's every release).
                shared.lastRelease = now
                // The releasing task holds it no more (the next holder records itself when it
                // gets its answer): a task that leases again at once must not wait for itself.
                if lease.demand == .exclusive || shared.state.leased[lease.entry.id] == nil {
                    shared.holders[lease.entry.id] = nil
                }
            }
            let after = (shared.state.idle.count, shared.state.leased.count)
            return (actions, before != after ? after : nil)
        }
        perform(actions)
        // A connection that went back to idle changed the counts without any action to record them.
        if actions.isEmpty, let (idle, leased) = counts {
            metrics.idle.set(idle)
            metrics.leased.set(leased)
        }
    }

    private func lease(_ demand: State.Demand, party: Party?, callSite: CallSite) async throws -> State.Entry {
        let start = monotonicNow()
        // A task on an I/O thread (one that prefers it as its executor) gets a connection that
        // thread serves first: its statements and its resumptions then stay on that thread.
        let affinity = IOThread.currentAffinity
        // Asked and, when a connection is idle or a lane has room, served in one step, without
        // suspending; otherwise the waiter is queued, and its answer is kept until it waits.
        let (waiter, served, actions, queued, canGrow, startRunner, countsChanged) = shared.withLock { shared in
            // Under load, a statement joins a lane without a waiter of its own: no id, no actions.
            if demand == .statement, let entry = shared.state.joinLane(preferring: affinity) {
                let served: Result<State.Entry, any Error>? = .success(entry)
                return (State.WaiterID(0), served, [State.Action](), false, false, false, false)
            }
            let startRunner = if case .notStarted = shared.runner { true } else { false }
            if startRunner { shared.runner = .running }
            let waiter = shared.state.makeWaiterID()
            var actions = shared.state.lease(waiter, demand: demand, affinity: affinity, now: monotonicNow())
            var served: Result<State.Entry, any Error>?
            var countsChanged = true
            actions.removeAll { action in
                switch action {
                case .share(let entry, waiter):
                    // One more statement on a lane: no connection changed hands.
                    served = .success(entry)
                    countsChanged = false
                case .lease(let entry, waiter):
                    served = .success(entry)
                    shared.leaseRecords[entry.id] = LeaseRecord(callSite: callSite, since: start, demand: demand)
                case .fail(waiter, let failure):
                    served = .failure(makeError(failure, waiter: waiter, shared))
                default:
                    return false
                }
                return true
            }
            if served == nil {
                shared.awaiting.insert(waiter)
                shared.waitRecords[waiter] = LeaseRecord(callSite: callSite, since: start, demand: demand)
            }
            let queued = shared.state.waiters.last?.id == waiter
            return (waiter, served, actions, queued, shared.state.canServeWithoutRelease, startRunner, countsChanged)
        }
        if startRunner { startOwnRunner() }
        perform(actions)
        if let served {
            if actions.isEmpty && countsChanged { recordGauges() }
            metrics.acquireDuration.recordNanoseconds(Int64(monotonicNow() - start))
            return try served.get()
        }
        let wait: PoolWaitSlot? = party == nil ? nil : PoolWaitSlot()
        defer { wait?.end() }
        // A waiter that must wait was appended to the queue (entered in the wait-for graph only
        // while a deadlock detector tracks leases).
        if let party, let wait, queued {
            wait.id = beginWait(waiter, party: party, callSite: callSite, canGrow: canGrow)
        }
        let entry = try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                let answer = shared.withLock { shared -> Result<State.Entry, any Error>? in
                    shared.awaiting.remove(waiter)
                    if let answer = shared.answers.removeValue(forKey: waiter) { return answer }
                    shared.continuations[waiter] = continuation
                    return nil
                }
                if let answer { continuation.resume(with: answer) }
            }
        } onCancel: {
            perform(shared.withLock { $0.state.cancel(waiter, because: .cancelled) })
        }
        metrics.acquireDuration.recordNanoseconds(Int64(monotonicNow() - start))
        return entry
    }

    /// Ends a waiting lease that a deadlock detector in throw mode found can never be served.
    func interruptWait(_ waiter: State.WaiterID, with error: DeadlockError) {
        let actions = shared.withLock { shared in
            shared.deadlockErrors[waiter] = error
            return shared.state.cancel(waiter, because: .deadlock)
        }
        perform(actions)
    }

    // MARK: Performing actions

    func perform(_ actions: [State.Action]) {
        guard !actions.isEmpty else { return }
        // Before any waiter resumes: the gauges already count the change that led to these
        // actions when the waiter looks (a request that timed out no longer pending).
        recordGauges()
        for action in actions {
            switch action {
            case .lease(let entry, let waiter), .share(let entry, let waiter):
                answer(waiter, with: .success(entry))
            case .checkHealth(let entry, let waiter):
                enqueue(.checkHealth(entry, for: waiter))
            case .connect:
                enqueue(.connect)
            case .close(let connection):
                enqueue(.close(connection))
            case .fail(let waiter, let failure):
                let error = shared.withLock { shared in
                    defer { shared.deadlockErrors[waiter] = nil }
                    return makeError(failure, waiter: waiter, shared)
                }
                answer(waiter, with: .failure(error))
            case .schedule(let timer, let deadline):
                let generation = shared.withLock { shared in
                    shared.timerGenerations[timer, default: 0] += 1
                    return shared.timerGenerations[timer, default: 0]
                }
                enqueue(.timer(timer, deadline: deadline, generation: generation))
            case .cancel(let timer):
                let stop = shared.withLock { shared in
                    shared.timerGenerations[timer, default: 0] += 1
                    return shared.timerStops.removeValue(forKey: timer)
                }
                stop?.resume()
            case .shutdownComplete:
                let (waiters, jobWaiter) = shared.withLock { shared in
                    shared.isShutDown = true
                    defer {
                        shared.shutdownWaiters = []
                        shared.jobWaiter = nil
                    }
                    return (shared.shutdownWaiters, shared.jobWaiter)
                }
                jobWaiter?.resume(returning: nil)
                for waiter in waiters { waiter.resume() }
            }
        }
    }

    /// Resumes `waiter` with `answer`, or keeps the answer until it waits.
    private func answer(_ waiter: State.WaiterID, with answer: Result<State.Entry, any Error>) {
        let continuation = shared.withLock { shared -> UnsafeContinuation<State.Entry, any Error>? in
            if let record = shared.waitRecords.removeValue(forKey: waiter), case .success(let entry) = answer,
                shared.leaseRecords[entry.id] == nil
            {
                shared.leaseRecords[entry.id] = LeaseRecord(
                    callSite: record.callSite,
                    since: monotonicNow(),
                    demand: record.demand
                )
            }
            if let continuation = shared.continuations.removeValue(forKey: waiter) { return continuation }
            if shared.awaiting.contains(waiter) { shared.answers[waiter] = answer }
            return nil
        }
        continuation?.resume(with: answer)
    }

    private func enqueue(_ job: Job) {
        let waiter = shared.withLock { shared -> UnsafeContinuation<Job?, Never>? in
            guard let waiter = shared.jobWaiter else {
                shared.jobs.append(job)
                return nil
            }
            shared.jobWaiter = nil
            return waiter
        }
        waiter?.resume(returning: job)
    }

    /// The next job for ``run()``; `nil` once the pool is shut down and every job was handed out.
    /// Not cancellable: a cancelled ``run()`` still runs the closes of its shutdown.
    private func nextJob() async -> Job? {
        await withUnsafeContinuation { continuation in
            let job = shared.withLock { shared -> Job?? in
                if !shared.jobs.isEmpty { return shared.jobs.removeFirst() }
                if shared.isShutDown { return .some(nil) }
                shared.jobWaiter = continuation
                return nil
            }
            if let job { continuation.resume(returning: job) }
        }
    }

    private func makeError(_ failure: State.Failure, waiter: State.WaiterID, _ shared: Shared) -> any Error {
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
        case .connectionFailed:
            metrics.connectFailedLeases.increment()
            return shared.lastConnectFailure ?? poolError(.acquireTimeout, timeout: nil)
        case .shutDown: return poolError(.shutDown, timeout: nil)
        case .timedOut:
            metrics.acquireTimeouts.increment()
            return poolError(.acquireTimeout, timeout: configuration.acquireTimeout)
        }
    }

    private func recordGauges() {
        let (idle, leased, waiting, canGrow, circuitOpen) = shared.withLock {
            (
                $0.state.idle.count, $0.state.leased.count, $0.state.waiters.count, $0.state.canServeWithoutRelease,
                $0.state.isCircuitOpen
            )
        }
        if waiting > 0 && WaitGraph.isActive { WaitGraph.setMayGrow(.object(resourceID), canGrow) }
        metrics.idle.set(idle)
        metrics.leased.set(leased)
        metrics.waiting.set(waiting)
        metrics.circuitOpen.set(circuitOpen ? 1 : 0)
    }

    // MARK: Jobs

    private func run(_ job: Job) async {
        switch job {
        case .connect:
            let connectStart = monotonicNow()
            do {
                let connection = try await connect()
                metrics.connectDuration.recordNanoseconds(Int64(monotonicNow() - connectStart))
                metrics.connectionsOpened.increment()
                let (actions, closed) = shared.withLock { shared in
                    let wasOpen = shared.state.isCircuitOpen
                    return (
                        shared.state.connected(
                            connection,
                            affinity: (connection as? any IOThreadAffine)?.ioThreadAffinity ?? 0,
                            attemptStartedAt: connectStart,
                            now: monotonicNow()
                        ),
                        wasOpen
                    )
                }
                if closed { logger.notice("the server accepts connections again", metadata: ["pool": "\(name)"]) }
                perform(actions)
            } catch {
                metrics.connectFailures.increment()
                logger.warning("connection attempt failed", metadata: ["pool": "\(name)", "error": "\(error)"])
                let (actions, opened) = shared.withLock { shared in
                    shared.lastConnectionError = "\(error)"
                    shared.lastConnectFailure = error
                    let wasOpen = shared.state.isCircuitOpen
                    let actions = shared.state.connectFailed(now: monotonicNow())
                    return (actions, !wasOpen && shared.state.isCircuitOpen)
                }
                if opened {
                    logger.error(
                        "no connection can be opened: leases fail at once with the connection error until the server accepts connections again",
                        metadata: ["pool": "\(name)", "error": "\(error)"]
                    )
                }
                perform(actions)
            }
        case .close(let connection):
            // The pool's own connections: the state machine hands back what it was given.
            await unsafeDowncast(connection, to: Connection.self).close()
            metrics.connectionsClosed.increment()
            perform(shared.withLock { $0.state.closed() })
        case .checkHealth(let entry, let waiter):
            let healthy = await unsafeDowncast(entry.connection, to: Connection.self).checkHealth()
            if !healthy {
                logger.debug("an idle connection failed its health check", metadata: ["pool": "\(name)"])
            }
            perform(
                shared.withLock { $0.state.healthChecked(entry, healthy: healthy, for: waiter, now: monotonicNow()) }
            )
        case .timer(let timer, let deadline, let generation):
            guard await sleep(timer, until: deadline, generation: generation) else { return }
            perform(shared.withLock { $0.state.timerFired(timer, now: monotonicNow()) })
        }
    }

    /// Sleeps until `deadline`; `false` when the timer was cancelled (or rescheduled) first.
    private func sleep(_ timer: State.Timer, until deadline: UInt64, generation: UInt64) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                let now = monotonicNow()
                guard deadline > now else { return true }
                return (try? await Task.sleep(for: .nanoseconds(Int64(clamping: deadline - now)))) != nil
            }
            group.addTask {
                await withUnsafeContinuation { (stop: UnsafeContinuation<Void, Never>) in
                    let stopped = self.shared.withLock { shared -> Bool in
                        guard shared.timerGenerations[timer] == generation else { return true }
                        shared.timerStops[timer] = stop
                        return false
                    }
                    if stopped { stop.resume() }
                }
                return false
            }
            let slept = await group.next() ?? false
            // Ends the other child: a sleep is cancelled; a stop is resumed, or, when it has not
            // registered yet, finds its generation stale and resumes itself.
            group.cancelAll()
            let (current, stop) = shared.withLock { shared -> (Bool, UnsafeContinuation<Void, Never>?) in
                guard shared.timerGenerations[timer] == generation else { return (false, nil) }
                shared.timerGenerations[timer, default: 0] += 1
                return (true, shared.timerStops.removeValue(forKey: timer))
            }
            stop?.resume()
            return slept && current
        }
    }

    // MARK: Running and shutting down

    /// Runs the pool until the task is cancelled or the service group shuts down, then shuts the
    /// pool down and returns once every leased connection has come back and every connection is
    /// closed.
    ///
    /// Opening, checking and closing connections and the pool's timers run as child tasks of this
    /// call. A second call (or a call after the pool started itself on its first lease) waits
    /// for the pool to shut down, and starts the shutdown when it is cancelled.
    public func run() async throws {
        let owner = shared.withLock { shared -> Bool in
            guard case .notStarted = shared.runner else { return false }
            shared.runner = .running
            return true
        }
        guard owner else {
            await withTaskCancellationHandler {
                await withGracefulShutdownHandler {
                    await waitUntilShutDown()
                } onGracefulShutdown: {
                    self.beginShutdown()
                }
            } onCancel: {
                self.beginShutdown()
            }
            return
        }
        await runJobs()
    }

    /// Runs the jobs until the pool is shut down.
    private func runJobs() async {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withDiscardingTaskGroup { group in
                    perform(shared.withLock { $0.state.started(now: monotonicNow()) })
                    while let job = await nextJob() {
                        group.addTask { await self.run(job) }
                    }
                }
            } onGracefulShutdown: {
                self.beginShutdown()
            }
        } onCancel: {
            self.beginShutdown()
        }
        shared.withLock { $0.runner = .finished }
    }

    /// Runs the pool in a task of its own, for a pool leased from before anything runs it.
    private func startOwnRunner() {
        logger.debug(
            "the pool runs itself: it was leased from before run() was called (run it in a ServiceGroup to tie it to your service's lifetime)",
            metadata: ["pool": "\(name)"]
        )
        Task { await self.runJobs() }
    }

    /// Stops leasing (waiting tasks get ``ConnectionPoolError/Code/shutDown``), closes idle
    /// connections, waits for leased ones to come back and closes them too.
    public func shutdown() async {
        beginShutdown()
        await waitUntilShutDown()
    }

    /// Starts the shutdown without waiting for it.
    private func beginShutdown() {
        perform(shared.withLock { $0.state.shutdown() })
    }

    private func waitUntilShutDown() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let done = shared.withLock { shared -> Bool in
                guard !shared.isShutDown else { return true }
                shared.shutdownWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
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

/// What a ``ConnectionPool`` keeps under its lock: the state machine and what runs its actions.
struct ConnectionPoolShared {
    var state: ConnectionPoolState
    var continuations: [ConnectionPoolState.WaiterID: UnsafeContinuation<ConnectionPoolState.Entry, any Error>] = [:]
    /// Waiters queued that do not wait yet (between asking and suspending), and the answers
    /// that came for them meanwhile.
    var awaiting: Set<ConnectionPoolState.WaiterID> = []
    var answers: [ConnectionPoolState.WaiterID: Result<ConnectionPoolState.Entry, any Error>] = [:]
    /// Work for ``run()`` to start as child tasks.
    var jobs: [ConnectionPoolJob] = []
    /// ``run()`` waiting for the next job.
    var jobWaiter: UnsafeContinuation<ConnectionPoolJob?, Never>?
    var runner = ConnectionPoolRunner.notStarted
    /// How to stop each timer that is running, by timer.
    var timerStops: [ConnectionPoolState.Timer: UnsafeContinuation<Void, Never>] = [:]
    /// Bumped each time a timer is scheduled or cancelled: a timer task whose generation is
    /// stale stops without firing.
    var timerGenerations: [ConnectionPoolState.Timer: UInt64] = [:]
    var lastConnectionError: String?
    /// The last connection attempt's error, which waiters get when nothing is left to serve
    /// them (``State/Failure/connectionFailed``).
    var lastConnectFailure: (any Error)?
    var isShutDown = false
    var shutdownWaiters: [UnsafeContinuation<Void, Never>] = []
    /// The errors of waits a deadlock detector ended (throw mode), by waiter.
    var deadlockErrors: [ConnectionPoolState.WaiterID: DeadlockError] = [:]
    /// Who holds each leased connection, by entry, while a deadlock detector runs.
    var holders: [ConnectionPoolState.EntryID: WaitGraph.Holding] = [:]
    /// When a tracked lease last came back.
    var lastRelease: UInt64 = 0
    /// Each leased connection's lease, by entry, for snapshots.
    var leaseRecords: [ConnectionPoolState.EntryID: ConnectionPoolLeaseRecord] = [:]
    /// Each waiter that waits, for snapshots.
    var waitRecords: [ConnectionPoolState.WaiterID: ConnectionPoolLeaseRecord] = [:]
}

/// Where and since when a connection was asked for, and for what.
struct ConnectionPoolLeaseRecord {
    let callSite: CallSite
    let since: UInt64
    let demand: ConnectionPoolState.Demand
}

/// What ``ConnectionPool/run()`` starts.
enum ConnectionPoolJob {
    case connect
    case close(ConnectionPoolState.Connection)
    case checkHealth(ConnectionPoolState.Entry, for: ConnectionPoolState.WaiterID)
    case timer(ConnectionPoolState.Timer, deadline: UInt64, generation: UInt64)
}

/// Whether a pool's ``ConnectionPool/run()`` runs.
enum ConnectionPoolRunner {
    case notStarted
    case running
    case finished
}

/// Monotonic nanoseconds.
func monotonicNow() -> UInt64 {
    monotonicNanoseconds()
}
