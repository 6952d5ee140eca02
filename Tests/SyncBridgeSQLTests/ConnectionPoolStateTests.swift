import Synchronization
import Testing

@testable import SyncBridgeSQL

/// Drives the pool's state machine directly: no connections, no threads, no clocks.
@Suite("ConnectionPoolState")
struct ConnectionPoolStateTests {
    final class FakeConnection: Sendable {
        let number: Int
        /// What the connection says of itself (``PooledConnection/isUsable``), as its I/O thread
        /// would set it.
        let broken = Mutex(false)
        init(_ number: Int) { self.number = number }
    }

    typealias State = ConnectionPoolState

    static let second: UInt64 = 1_000_000_000

    static func makeState(minimum: Int = 0, maximum: Int = 2) -> State {
        State(
            limits: .init(
                minimumConnections: minimum,
                maximumConnections: maximum,
                acquireTimeout: 5 * second,
                idleTimeout: 60 * second,
                maximumLifetime: 600 * second,
                healthCheckAfterIdle: 10 * second,
                initialBackoff: second / 10,
                maximumBackoff: 2 * second,
                maintenanceInterval: second
            )
        ) { ($0 as? FakeConnection)?.broken.withLock { $0 } ?? false }
    }

    /// Asks for a connection as the pool does: a waiter id, then the lease.
    static func ask(
        _ state: inout State,
        _ demand: State.Demand = .exclusive,
        now: UInt64 = 0
    ) -> (State.WaiterID, [State.Action]) {
        let waiter = state.makeWaiterID()
        return (waiter, state.lease(waiter, demand: demand, now: now))
    }

    /// Two statements asked, and two connections (`first`, `second`) opened for them: two lanes
    /// of one statement each, served by I/O threads `affinities`.
    func twoLanes(
        _ state: inout State,
        _ first: FakeConnection = FakeConnection(1),
        _ second: FakeConnection = FakeConnection(2),
        affinities: (UInt, UInt) = (0, 0)
    ) -> (State.Entry, State.Entry) {
        let (s1, _) = Self.ask(&state, .statement)
        let (s2, _) = Self.ask(&state, .statement)
        let lane1 = leasedEntry(state.connected(first, affinity: affinities.0, now: 0), to: s1)!
        let lane2 = leasedEntry(state.connected(second, affinity: affinities.1, now: 0), to: s2)!
        return (lane1, lane2)
    }

    func leasedEntry(_ actions: [State.Action], to waiter: UInt64) -> State.Entry? {
        for case .lease(let entry, let target) in actions where target == waiter { return entry }
        return nil
    }

    func connects(_ actions: [State.Action]) -> Int {
        actions.filter { if case .connect = $0 { true } else { false } }.count
    }

    func schedules(_ actions: [State.Action]) -> [State.Timer: UInt64] {
        var timers: [State.Timer: UInt64] = [:]
        for case .schedule(let timer, let deadline) in actions { timers[timer] = deadline }
        return timers
    }

    func cancels(_ actions: [State.Action]) -> Set<State.Timer> {
        var timers: Set<State.Timer> = []
        for case .cancel(let timer) in actions { timers.insert(timer) }
        return timers
    }

    @Test("a lease with nothing idle opens a connection and hands it over; a released one is reused")
    func leaseConnectRelease() {
        var state = Self.makeState()
        let (first, asked) = Self.ask(&state)
        #expect(connects(asked) == 1)
        #expect(schedules(asked) == [.acquireTimeout(first): 5 * Self.second])
        #expect(state.waiters.map(\.id) == [first])
        let connection = FakeConnection(1)
        let served = state.connected(connection, now: 1)
        let entry = leasedEntry(served, to: first)
        #expect(entry?.connection === connection)
        #expect(cancels(served) == [.acquireTimeout(first)])
        #expect(state.released(entry!.id, reusable: true, now: 2).isEmpty)
        #expect(state.idle.count == 1)
        let (second, again) = Self.ask(&state, now: 3)
        #expect(leasedEntry(again, to: second)?.connection === connection)
        #expect(schedules(again).isEmpty)
    }

    @Test("never more than the maximum; a waiter gets the next released connection")
    func maximum() {
        var state = Self.makeState(maximum: 2)
        let (first, a1) = Self.ask(&state)
        let (second, a2) = Self.ask(&state)
        let (third, a3) = Self.ask(&state)
        #expect([connects(a1), connects(a2), connects(a3)] == [1, 1, 0])
        let a = leasedEntry(state.connected(FakeConnection(1), now: 1), to: first)!
        _ = leasedEntry(state.connected(FakeConnection(2), now: 1), to: second)!
        #expect(state.totalConnections == 2)
        #expect(state.waiters.map(\.id) == [third])
        let handedOver = leasedEntry(state.released(a.id, reusable: true, now: 2), to: third)
        #expect(handedOver?.connection === a.connection)
    }

    @Test("a broken connection is closed on release and replaced for the next waiter")
    func brokenConnection() {
        var state = Self.makeState(maximum: 1)
        let (first, _) = Self.ask(&state)
        let entry = leasedEntry(state.connected(FakeConnection(1), now: 0), to: first)!
        _ = Self.ask(&state)
        let actions = state.released(entry.id, reusable: false, now: 1)
        #expect(actions.contains { if case .close(let c) = $0 { c === entry.connection } else { false } })
        #expect(connects(actions) == 1)
        #expect(state.closing == 1)
    }

    @Test("a waiter times out through its timer, once; a served waiter's timer does nothing")
    func acquireTimeout() {
        var state = Self.makeState(maximum: 1)
        let (first, _) = Self.ask(&state)
        let (second, _) = Self.ask(&state)
        _ = state.connected(FakeConnection(1), now: 1)
        #expect(state.timerFired(.acquireTimeout(first), now: 5 * Self.second).isEmpty)
        guard case .fail(second, .timedOut)? = state.timerFired(.acquireTimeout(second), now: 5 * Self.second).first
        else {
            Issue.record("expected a timeout failure")
            return
        }
        #expect(state.timerFired(.acquireTimeout(second), now: 6 * Self.second).isEmpty)
        #expect(state.waiters.isEmpty)
    }

    @Test(
        "a waiter cancelled before its lease arrives is refused when it does; a queued one is failed and its timer stopped"
    )
    func cancellation() {
        var state = Self.makeState(maximum: 1)
        let early = state.makeWaiterID()
        #expect(state.cancel(early, because: .cancelled).isEmpty)
        guard case .fail(early, .cancelled)? = state.lease(early, demand: .exclusive, now: 0).first else {
            Issue.record("expected the early-cancelled lease to be refused")
            return
        }
        let (queued, _) = Self.ask(&state)
        let actions = state.cancel(queued, because: .cancelled)
        #expect(actions.contains { if case .fail(queued, .cancelled) = $0 { true } else { false } })
        #expect(cancels(actions) == [.acquireTimeout(queued)])
        #expect(state.cancel(queued, because: .cancelled).isEmpty)
        // The connection opened for it goes idle.
        _ = state.connected(FakeConnection(1), now: 1)
        #expect(state.idle.count == 1)
    }

    @Test("failed attempts back off through the reconnect timer, exponentially, capped; a success resets it")
    func backoff() {
        var state = Self.makeState(maximum: 1)
        #expect(connects(Self.ask(&state).1) == 1)
        #expect(schedules(state.connectFailed(now: 1)) == [.reconnect: 1 + Self.second / 10])
        #expect(connects(state.timerFired(.reconnect, now: 2)) == 1)
        #expect(schedules(state.connectFailed(now: 3)) == [.reconnect: 3 + Self.second / 5])
        // While backing off, new waiters open nothing.
        #expect(connects(Self.ask(&state).1) == 0)
        #expect(connects(state.timerFired(.reconnect, now: 4)) == 1)
        for _ in 0..<10 {
            _ = state.connectFailed(now: 5)
            _ = state.timerFired(.reconnect, now: 5)
        }
        #expect(state.backoff == 2 * Self.second)
        _ = state.connected(FakeConnection(1), now: 6)
        #expect(state.backoff == 0)
    }

    @Test("a connection idle past the threshold is health-checked before it is leased")
    func healthCheck() {
        var state = Self.makeState()
        let (first, _) = Self.ask(&state)
        let entry = leasedEntry(state.connected(FakeConnection(1), now: 0), to: first)!
        _ = state.released(entry.id, reusable: true, now: 0)
        let (second, actions) = Self.ask(&state, now: 11 * Self.second)
        guard case .checkHealth(let checked, for: second)? = actions.first else {
            Issue.record("expected a health check")
            return
        }
        let retry = state.healthChecked(checked, healthy: false, for: second, now: 11 * Self.second)
        #expect(retry.contains { if case .close = $0 { true } else { false } })
        #expect(connects(retry) == 1)
        #expect(state.waiters.map(\.id) == [second])
        #expect(schedules(retry) == [.acquireTimeout(second): 16 * Self.second])
    }

    @Test("once a connection comes back broken, the idle ones are checked before they are leased")
    func checkIdleAfterBreakage() {
        var state = Self.makeState(maximum: 2)
        let (first, _) = Self.ask(&state)
        let (second, _) = Self.ask(&state)
        let a = leasedEntry(state.connected(FakeConnection(1), now: 1), to: first)!
        let b = leasedEntry(state.connected(FakeConnection(2), now: 1), to: second)!
        _ = state.released(a.id, reusable: true, now: 2)
        // b broke (a server restart): a, idle since before, is checked, not handed out as is.
        _ = state.released(b.id, reusable: false, now: 3)
        let (third, actions) = Self.ask(&state, now: 4)
        guard case .checkHealth(let checked, for: third)? = actions.first else {
            Issue.record("expected a health check, got \(actions)")
            return
        }
        #expect(checked.id == a.id)
        // Once it passed, it is leased as usual, and used again without a check.
        let leased = leasedEntry(state.healthChecked(checked, healthy: true, for: third, now: 5), to: third)!
        _ = state.released(leased.id, reusable: true, now: 6)
        let (fourth, again) = Self.ask(&state, now: 7)
        #expect(leasedEntry(again, to: fourth)?.id == a.id)
    }

    @Test(
        "an idle connection found over (its I/O thread saw the server close it) is closed, never leased; the others idle through it are checked"
    )
    func idleConnectionFoundOver() {
        var state = Self.makeState(maximum: 2)
        let (first, _) = Self.ask(&state)
        let (second, _) = Self.ask(&state)
        let a = leasedEntry(state.connected(FakeConnection(1), now: 1), to: first)!
        let bConnection = FakeConnection(2)
        let b = leasedEntry(state.connected(bConnection, now: 1), to: second)!
        _ = state.released(a.id, reusable: true, now: 2)
        _ = state.released(b.id, reusable: true, now: 2)
        bConnection.broken.withLock { $0 = true }
        // b is the most recently idle, the one a lease takes first.
        let (third, actions) = Self.ask(&state, now: 3)
        let closed = actions.compactMap { if case .close(let connection) = $0 { connection } else { nil } }
        #expect(closed.count == 1 && closed.first === bConnection)
        guard case .checkHealth(let checked, for: third)? = actions.last else {
            Issue.record("expected a health check of the other idle connection, got \(actions)")
            return
        }
        #expect(checked.id == a.id)
        #expect(state.idle.isEmpty && state.closing == 1)
    }

    @Test("upkeep closes an idle connection found over and opens the minimum again")
    func maintenanceClosesIdleFoundOver() {
        var state = Self.makeState(minimum: 1, maximum: 2)
        _ = state.started(now: 0)
        let connection = FakeConnection(1)
        _ = state.connected(connection, now: 0)
        #expect(state.idle.count == 1)
        connection.broken.withLock { $0 = true }
        let upkeep = state.timerFired(.maintenance, now: Self.second)
        #expect(upkeep.contains { if case .close(let closed) = $0 { closed === connection } else { false } })
        #expect(connects(upkeep) == 1)
        #expect(state.idle.isEmpty)
    }

    @Test("a connection whose attempt began before a breakage is checked before its first lease")
    func checkConnectionOpenedThroughBreakage() {
        var state = Self.makeState(minimum: 2, maximum: 3)
        #expect(connects(state.started(now: 0)) == 2)
        _ = state.connected(FakeConnection(1), attemptStartedAt: 0, now: 1)
        let (first, _) = Self.ask(&state, now: 1)
        guard let broken = state.leased.values.first, state.leased.count == 1 else {
            Issue.record("expected the idle connection leased to \(first), leased: \(state.leased)")
            return
        }
        // It breaks at 3 (a server shutting down); its replacement's attempt begins then.
        #expect(connects(state.released(broken.id, reusable: false, now: 3)) == 1)
        // The second attempt of start-up, begun at 0, was accepted by the server that is shutting
        // down: it succeeds at 4, and may already be ended. The replacement succeeds at 5.
        let early = state.connected(FakeConnection(2), attemptStartedAt: 0, now: 4)
        let replacement = state.connected(FakeConnection(3), attemptStartedAt: 4, now: 5)
        #expect(early.isEmpty && replacement.isEmpty && state.idle.count == 2)
        // The replacement is leased as it is; the connection opened through the breakage is checked.
        let (second, direct) = Self.ask(&state, now: 6)
        #expect(leasedEntry(direct, to: second)?.id == 3)
        let (third, checked) = Self.ask(&state, now: 6)
        guard case .checkHealth(let entry, for: third)? = checked.first else {
            Issue.record("expected a health check, got \(checked)")
            return
        }
        #expect(entry.id == 2)
    }

    @Test("upkeep runs on the maintenance timer: idle connections above the minimum close, the minimum stays open")
    func maintenance() {
        var state = Self.makeState(minimum: 1, maximum: 3)
        let start = state.started(now: 0)
        #expect(connects(start) == 1)
        #expect(schedules(start) == [.maintenance: Self.second])
        _ = state.connected(FakeConnection(1), now: 0)
        let (first, got) = Self.ask(&state)
        let a = leasedEntry(got, to: first)!
        let (second, _) = Self.ask(&state)
        let b = leasedEntry(state.connected(FakeConnection(2), now: 0), to: second)!
        _ = state.released(a.id, reusable: true, now: 1)
        _ = state.released(b.id, reusable: true, now: 1)
        #expect(state.idle.count == 2)
        let upkeep = state.timerFired(.maintenance, now: 70 * Self.second)
        #expect(upkeep.filter { if case .close = $0 { true } else { false } }.count == 1)
        #expect(schedules(upkeep) == [.maintenance: 71 * Self.second])
        #expect(state.idle.count == 1)
    }

    @Test("statements get connections of their own while the pool can grow, then join the least loaded lane")
    func statementLanes() {
        var state = Self.makeState(maximum: 2)
        let (lane1, lane2) = twoLanes(&state)
        #expect(state.lanes == [lane1.id: 1, lane2.id: 1])
        let (s3, joined) = Self.ask(&state, .statement)
        guard case .share(let shared, with: s3)? = joined.first else {
            Issue.record("expected the statement to join a lane")
            return
        }
        #expect(state.lanes[shared.id] == 2)
        // A lane's connection comes back when its last statement ends.
        #expect(state.statementFinished(on: shared.id, reusable: true, now: 1).isEmpty)
        #expect(state.leased[shared.id] != nil)
        _ = state.statementFinished(on: shared.id, reusable: true, now: 1)
        #expect(state.leased[shared.id] == nil)
        #expect(state.idle.count == 1)
    }

    @Test(
        "a task on an I/O thread gets that thread's idle connection first, and its lanes while at most one statement busier"
    )
    func affinity() {
        var state = Self.makeState(maximum: 2)
        let (a, b) = twoLanes(&state, affinities: (10, 20))
        _ = state.statementFinished(on: a.id, reusable: true, now: 1)
        _ = state.statementFinished(on: b.id, reusable: true, now: 1)
        #expect(state.idle.map(\.id) == [a.id, b.id])
        // Idle: the matching connection, not the last one back.
        func lease(_ affinity: UInt) -> State.EntryID? {
            let waiter = state.makeWaiterID()
            let actions = state.lease(waiter, demand: .statement, affinity: affinity, now: 1)
            for action in actions {
                switch action {
                case .lease(let entry, waiter), .share(let entry, with: waiter): return entry.id
                default: continue
                }
            }
            return nil
        }
        #expect(lease(10) == a.id)
        // None idle matches: the one there is.
        #expect(lease(10) == b.id)
        #expect(state.lanes == [a.id: 1, b.id: 1])
        // Lanes: the matching one while it has at most one statement more than the least loaded.
        #expect(lease(20) == b.id)
        #expect(lease(20) == b.id)
        #expect(state.lanes == [a.id: 1, b.id: 3])
        #expect(lease(20) == a.id)
        // No affinity: the least loaded.
        #expect(lease(0) == a.id)
        #expect(state.lanes == [a.id: 3, b.id: 3])
    }

    @Test("a lane whose connection broke takes no more statements, however short its queue, and closes when it drains")
    func brokenLanesTakeNoStatements() {
        var state = Self.makeState(maximum: 2)
        let (broken, healthy) = twoLanes(&state)
        // Three more on each lane.
        for _ in 0..<6 { _ = Self.ask(&state, .statement) }
        #expect(state.lanes == [broken.id: 4, healthy.id: 4])
        // The broken lane's statements fail fast: it becomes the shortest, yet nothing joins it.
        for _ in 0..<3 { _ = state.statementFinished(on: broken.id, reusable: false, now: 1) }
        for _ in 0..<4 {
            let (_, joined) = Self.ask(&state, .statement)
            guard case .share(let lane, with: _)? = joined.first else {
                Issue.record("expected the statement to join a lane")
                return
            }
            #expect(lane.id == healthy.id)
        }
        #expect(state.lanes == [broken.id: 1, healthy.id: 8])
        // Its last statement ends: the connection is closed, not kept.
        let closing = state.statementFinished(on: broken.id, reusable: false, now: 2)
        #expect(
            closing.contains {
                if case .close(let connection) = $0 { (connection as? FakeConnection)?.number == 1 } else { false }
            }
        )
        #expect(state.lanes[broken.id] == nil && state.brokenLanes.isEmpty)
    }

    @Test(
        "a lane whose connection says it broke takes no more statements from then on, before any of its statements is released"
    )
    func laneBrokenBeforeRelease() {
        var state = Self.makeState(maximum: 2)
        let connection = FakeConnection(1)
        let (broken, healthy) = twoLanes(&state, connection)
        for _ in 0..<2 { _ = state.joinLane() }
        #expect(state.lanes == [broken.id: 2, healthy.id: 2])
        // Its I/O thread found it broken; no statement of it has come back yet. The healthy lane
        // takes every statement, the fast path's and the queue's, though it becomes the longer.
        connection.broken.withLock { $0 = true }
        #expect(state.joinLane()?.id == healthy.id)
        let (_, joined) = Self.ask(&state, .statement)
        guard case .share(let lane, with: _)? = joined.first else {
            Issue.record("expected the statement to join a lane")
            return
        }
        #expect(lane.id == healthy.id)
        #expect(state.lanes == [broken.id: 2, healthy.id: 4])
        #expect(state.brokenLanes == [broken.id])
        // Its statements end: the last closes it.
        #expect(state.statementFinished(on: broken.id, reusable: false, now: 1).isEmpty)
        let closing = state.statementFinished(on: broken.id, reusable: false, now: 2)
        #expect(
            closing.contains {
                if case .close(let closed) = $0 { closed === connection } else { false }
            }
        )
        #expect(state.lanes == [healthy.id: 4] && state.brokenLanes.isEmpty)
    }

    @Test(
        "statements queued while idle connections were health-checked join lanes once every connection is leased; new ones join lanes again"
    )
    func queuedStatementsJoinLanes() {
        var state = Self.makeState(maximum: 2)
        // Two connections, last used long ago: the next leases check them first.
        let (a, _) = Self.ask(&state, .statement)
        let (b, _) = Self.ask(&state, .statement)
        let first = leasedEntry(state.connected(FakeConnection(1), now: 0), to: a)!
        let second = leasedEntry(state.connected(FakeConnection(2), now: 0), to: b)!
        _ = state.statementFinished(on: first.id, reusable: true, now: 0)
        _ = state.statementFinished(on: second.id, reusable: true, now: 0)
        let later = 20 * Self.second
        var checks: [(State.Entry, State.WaiterID)] = []
        for _ in 0..<2 {
            let (_, actions) = Self.ask(&state, .statement, now: later)
            for case .checkHealth(let entry, let target) in actions { checks.append((entry, target)) }
        }
        #expect(checks.count == 2)
        // Six statements arrive during the checks: no lane exists yet, so they queue.
        let queued = (0..<6).map { _ in Self.ask(&state, .statement, now: later).0 }
        #expect(state.waiters.map(\.id) == queued)

        // The first check ends: its statement gets the connection, and the queued statements join
        // that lane (the other connection is its own waiter's) and their acquire timers stop.
        let afterFirst = state.healthChecked(checks[0].0, healthy: true, for: checks[0].1, now: later)
        let firstLane = leasedEntry(afterFirst, to: checks[0].1)!
        var shared: [State.WaiterID] = []
        for case .share(let entry, let waiter) in afterFirst where entry.id == firstLane.id { shared.append(waiter) }
        #expect(shared == queued)
        #expect(cancels(afterFirst).isSuperset(of: Set(queued.map { State.Timer.acquireTimeout($0) })))
        #expect(state.waiters.isEmpty)
        // The second ends: its statement opens the second lane, and new statements go to the
        // least loaded lane at once rather than queueing.
        let afterSecond = state.healthChecked(checks[1].0, healthy: true, for: checks[1].1, now: later)
        let secondLane = leasedEntry(afterSecond, to: checks[1].1)!
        #expect(state.lanes == [firstLane.id: 7, secondLane.id: 1])
        let (_, next) = Self.ask(&state, .statement, now: later)
        #expect(next.contains { if case .share(let entry, _) = $0 { entry.id == secondLane.id } else { false } })
    }

    @Test("statements do not join lanes while a task waits for a connection of its own")
    func lanesDoNotStarveExclusiveLeases() {
        var state = Self.makeState(maximum: 1)
        let (statement, _) = Self.ask(&state, .statement)
        let lane = leasedEntry(state.connected(FakeConnection(1), now: 0), to: statement)!
        let (exclusive, _) = Self.ask(&state, .exclusive)
        let (later, queued) = Self.ask(&state, .statement)
        #expect(!queued.contains { if case .share = $0 { true } else { false } })
        #expect(state.waiters.map(\.id) == [exclusive, later])
        let handedOver = state.statementFinished(on: lane.id, reusable: true, now: 1)
        #expect(leasedEntry(handedOver, to: exclusive)?.id == lane.id)
        #expect(state.lanes.isEmpty)
    }

    @Test(
        "when attempts fail and nothing is left to serve, waiters fail at once; leases fail fast; probes run each backoff until one succeeds"
    )
    func circuit() {
        var state = Self.makeState(maximum: 2)
        let (first, _) = Self.ask(&state)
        let (second, _) = Self.ask(&state)
        #expect(state.connecting == 2)
        // One attempt fails while the other is in flight: nobody fails yet.
        let afterOne = state.connectFailed(now: 1)
        #expect(!afterOne.contains { if case .fail = $0 { true } else { false } })
        #expect(!state.isCircuitOpen)
        // The last one fails: both waiters get the connection error, and their timers stop.
        let afterTwo = state.connectFailed(now: 2)
        let failed = afterTwo.compactMap { if case .fail(let waiter, .connectionFailed) = $0 { waiter } else { nil } }
        #expect(Set(failed) == [first, second])
        #expect(cancels(afterTwo).isSuperset(of: [.acquireTimeout(first), .acquireTimeout(second)]))
        #expect(state.isCircuitOpen)
        #expect(state.waiters.isEmpty)
        // While it is open and no attempt runs, a lease fails at once.
        guard case .fail(_, .connectionFailed)? = Self.ask(&state, now: 3).1.first else {
            Issue.record("expected a fast failure")
            return
        }
        // The backoff ends: one probe, even with nobody waiting; a lease during the probe waits
        // for it.
        #expect(connects(state.timerFired(.reconnect, now: 4 * Self.second)) == 1)
        let (third, queued) = Self.ask(&state, now: 4 * Self.second)
        #expect(!queued.contains { if case .fail = $0 { true } else { false } })
        let served = state.connected(FakeConnection(1), now: 5 * Self.second)
        #expect(leasedEntry(served, to: third) != nil)
        #expect(!state.isCircuitOpen)
    }

    @Test(
        "a burst of statements while the first connections open shares them as lanes, each up to its share of the burst, instead of queueing for one each"
    )
    func burst() throws {
        var state = Self.makeState(maximum: 2)
        var asked: [State.WaiterID] = []
        for _ in 0..<10 { asked.append(Self.ask(&state, .statement).0) }
        #expect(state.connecting == 2)
        // The first connection: one statement gets it, and queued statements join its lane up to
        // its share of the ten (five, with one more connection on its way); the rest wait for
        // that connection rather than pile onto the first.
        let first = state.connected(FakeConnection(1), now: 1)
        let sharedFirst = first.filter { if case .share = $0 { true } else { false } }.count
        let lane = try #require(leasedEntry(first, to: asked[0]))
        #expect(sharedFirst == 4)
        #expect(state.waiters.map(\.id) == Array(asked[5...]))
        // The second connection serves the next one, and the last four join its lane.
        let second = state.connected(FakeConnection(2), now: 2)
        let other = try #require(leasedEntry(second, to: asked[5]))
        let sharedSecond = second.compactMap { if case .share(let entry, _) = $0 { entry.id } else { nil } }
        #expect(sharedSecond == [other.id, other.id, other.id, other.id])
        #expect(state.waiters.isEmpty)
        #expect(state.lanes == [lane.id: 5, other.id: 5])
    }

    @Test(
        "shutdown fails waiters, stops the timers, closes idle connections, and completes when leases and closes are done"
    )
    func shutdown() {
        var state = Self.makeState(maximum: 2)
        _ = state.started(now: 0)
        let (first, _) = Self.ask(&state)
        let (second, _) = Self.ask(&state)
        let (third, _) = Self.ask(&state)
        let a = leasedEntry(state.connected(FakeConnection(1), now: 0), to: first)!
        let b = leasedEntry(state.connected(FakeConnection(2), now: 0), to: second)!
        _ = state.released(b.id, reusable: true, now: 0)
        #expect(state.waiters.isEmpty)  // the third got b
        _ = third
        let (fourth, _) = Self.ask(&state)
        let actions = state.shutdown()
        #expect(actions.contains { if case .fail(fourth, .shutDown) = $0 { true } else { false } })
        #expect(cancels(actions) == [.acquireTimeout(fourth), .maintenance])
        #expect(!actions.contains { if case .shutdownComplete = $0 { true } else { false } })
        guard case .fail(_, .shutDown)? = Self.ask(&state, now: 1).1.first else {
            Issue.record("expected a refusal")
            return
        }
        let afterFirst = state.released(a.id, reusable: true, now: 2)
        #expect(afterFirst.contains { if case .close = $0 { true } else { false } })
        let afterThird = state.released(b.id, reusable: true, now: 2)
        #expect(!afterThird.contains { if case .shutdownComplete = $0 { true } else { false } })
        #expect(state.closed().isEmpty)
        #expect(state.closed().contains { if case .shutdownComplete = $0 { true } else { false } })
        #expect(state.lifecycle == .shutDown)
    }
}
