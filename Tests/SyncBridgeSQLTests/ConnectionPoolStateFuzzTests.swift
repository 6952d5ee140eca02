import Testing

@testable import SyncBridgeSQL

/// Drives the pool's state machine with random events — leases of both kinds, releases (some
/// broken), cancellations before and after asking, connection attempts that succeed or fail,
/// health checks, closes, timers firing, shutdown — and checks its invariants after every one:
/// never more connections than the maximum, no waiter answered twice, every connection accounted
/// for (idle, leased, being checked, or closed exactly once), lanes only on leased connections,
/// and a shutdown that completes once everything has come back.
@Suite("ConnectionPoolState, randomised")
struct ConnectionPoolStateFuzzTests {
    typealias State = ConnectionPoolState
    typealias Connection = ConnectionPoolStateTests.FakeConnection

    /// SplitMix64: a seeded generator, so that a failing seed can be replayed.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// What the owner of the machine has in hand: the effects of the actions, as the pool would
    /// carry them out.
    struct World {
        var state: State
        var random: SeededGenerator
        var now: UInt64 = 0
        var nextConnection = 0
        /// Waiter ids handed out, not yet asked with.
        var issued: [State.WaiterID] = []
        /// Waiters that asked and have no answer yet.
        var waiting: [State.WaiterID: State.Demand] = [:]
        /// Every waiter that got its answer.
        var answered: Set<State.WaiterID> = []
        /// Leases the "tasks" hold: entry and kind.
        var held: [(entry: State.Entry, demand: State.Demand)] = []
        var pendingConnects = 0
        var pendingChecks: [(entry: State.Entry, waiter: State.WaiterID)] = []
        var pendingCloses: [Connection] = []
        var timers: [State.Timer: UInt64] = [:]
        /// Connections open (not yet asked to close), by identity.
        var live: Set<ObjectIdentifier> = []
        var closedTwice = false
        var shutdownCompletions = 0
        var problems: [String] = []

        mutating func apply(_ actions: [State.Action]) {
            for action in actions {
                switch action {
                case .lease(let entry, let waiter):
                    answer(waiter)
                    if let demand = waiting.removeValue(forKey: waiter) {
                        held.append((entry, demand))
                    } else {
                        problems.append("leased to \(waiter), which was not waiting")
                    }
                case .share(let entry, let waiter):
                    answer(waiter)
                    guard waiting.removeValue(forKey: waiter) == .statement else {
                        problems.append("shared a lane with \(waiter), which was not a waiting statement")
                        continue
                    }
                    held.append((entry, .statement))
                case .checkHealth(let entry, let waiter):
                    if waiting.removeValue(forKey: waiter) == nil {
                        problems.append("checked a connection for \(waiter), which was not waiting")
                    }
                    pendingChecks.append((entry, waiter))
                case .connect:
                    pendingConnects += 1
                case .close(let connection):
                    if live.remove(ObjectIdentifier(connection)) == nil { closedTwice = true }
                    pendingCloses.append(connection as! Connection)
                case .fail(let waiter, _):
                    answer(waiter)
                    if waiting.removeValue(forKey: waiter) == nil {
                        problems.append("failed \(waiter), which was not waiting")
                    }
                case .schedule(let timer, let deadline):
                    timers[timer] = deadline
                case .cancel(let timer):
                    timers[timer] = nil
                case .shutdownComplete:
                    shutdownCompletions += 1
                }
            }
        }

        /// A health check ends: the waiter is answered, or back in line when the check failed.
        mutating func finishCheck(_ entry: State.Entry, for waiter: State.WaiterID, healthy: Bool) {
            if let demand = state.checks[waiter] { waiting[waiter] = demand }
            apply(state.healthChecked(entry, healthy: healthy, for: waiter, now: now))
        }

        mutating func answer(_ waiter: State.WaiterID) {
            if !answered.insert(waiter).inserted { problems.append("waiter \(waiter) answered twice") }
        }

        mutating func pick(_ count: Int) -> Int { Int.random(in: 0..<count, using: &random) }
        mutating func chance(_ percent: Int) -> Bool { pick(100) < percent }

        /// One random event; returns its name.
        mutating func step(allowShutdown: Bool) -> String {
            now += UInt64(pick(200)) * 1_000_000
            switch pick(12) {
            case 0, 1, 2:
                let waiter = state.makeWaiterID()
                let demand: State.Demand = chance(60) ? .statement : .exclusive
                waiting[waiter] = demand
                apply(state.lease(waiter, demand: demand, now: now))
                return "lease \(waiter) \(demand)"
            case 3:
                issued.append(state.makeWaiterID())
                return "issue"
            case 4:
                if !issued.isEmpty, chance(50) {
                    let waiter = issued.remove(at: pick(issued.count))
                    apply(state.cancel(waiter, because: .cancelled))
                    waiting[waiter] = .exclusive
                    apply(state.lease(waiter, demand: .exclusive, now: now))
                    return "cancel early \(waiter)"
                }
                guard let waiter = waiting.keys.randomElement(using: &random) else { return "none" }
                apply(state.cancel(waiter, because: chance(80) ? .cancelled : .deadlock))
                return "cancel \(waiter)"
            case 5, 6:
                guard !held.isEmpty else { return "none" }
                let (entry, demand) = held.remove(at: pick(held.count))
                let reusable = chance(85)
                apply(
                    demand == .statement
                        ? state.statementFinished(on: entry.id, reusable: reusable, now: now)
                        : state.released(entry.id, reusable: reusable, now: now)
                )
                return "release \(entry.id)"
            case 7:
                guard pendingConnects > 0 else { return "none" }
                pendingConnects -= 1
                if chance(75) {
                    nextConnection += 1
                    let connection = Connection(nextConnection)
                    live.insert(ObjectIdentifier(connection))
                    apply(state.connected(connection, now: now))
                    return "connected"
                }
                apply(state.connectFailed(now: now))
                return "connect failed"
            case 8:
                guard !pendingChecks.isEmpty else { return "none" }
                let (entry, waiter) = pendingChecks.remove(at: pick(pendingChecks.count))
                finishCheck(entry, for: waiter, healthy: chance(70))
                return "health checked"
            case 9:
                guard !pendingCloses.isEmpty else { return "none" }
                pendingCloses.remove(at: pick(pendingCloses.count))
                apply(state.closed())
                return "closed"
            case 10:
                guard let (timer, deadline) = timers.randomElement(using: &random) else { return "none" }
                timers[timer] = nil
                now = max(now, deadline)
                apply(state.timerFired(timer, now: now))
                return "timer \(timer)"
            default:
                if allowShutdown, chance(5) {
                    apply(state.shutdown())
                    return "shutdown"
                }
                if !state.isStarted { apply(state.started(now: now)) }
                return "started"
            }
        }

        /// The machine's view agrees with the world's.
        func check(after event: String, seed: UInt64) {
            let context = Comment(rawValue: "seed \(seed), after \(event)")
            #expect(problems.isEmpty, context)
            #expect(!closedTwice, context)
            #expect(state.totalConnections <= state.limits.maximumConnections, context)
            #expect(state.connecting == pendingConnects, context)
            #expect(state.closing == pendingCloses.count, context)
            #expect(state.checks.count == pendingChecks.count, context)
            // Every open connection is idle, leased or being checked, once.
            var accounted = state.idle.map { ObjectIdentifier($0.connection) }
            accounted += state.leased.values.map { ObjectIdentifier($0.connection) }
            accounted += pendingChecks.map { ObjectIdentifier($0.entry.connection) }
            #expect(accounted.count == Set(accounted).count, context)
            #expect(Set(accounted) == live, context)
            // Lanes are leased connections with statements in flight.
            for (id, count) in state.lanes {
                #expect(state.leased[id] != nil && count > 0, context)
            }
            let heldStatements = Dictionary(grouping: held.filter { $0.demand == .statement }, by: \.entry.id)
                .mapValues(\.count)
            #expect(heldStatements == state.lanes, context)
            #expect(Set(held.map(\.entry.id)) == Set(state.leased.keys), context)
            // The queue is exactly the waiters without an answer.
            #expect(Set(state.waiters.map(\.id)) == Set(waiting.keys), context)
            #expect(state.waiters.allSatisfy { timers[.acquireTimeout($0.id)] != nil }, context)
            // No acquire timer outlives its wait.
            for case .acquireTimeout(let waiter) in timers.keys {
                #expect(waiting[waiter] != nil, context)
            }
            #expect(shutdownCompletions <= 1, context)
        }
    }

    @Test("random events keep every invariant, and shutdown completes once everything has come back", arguments: 0..<40)
    func randomEvents(seed: UInt64) {
        var world = World(
            state: ConnectionPoolStateTests.makeState(
                minimum: min(Int(seed % 3), 1 + Int(seed % 5)),
                maximum: 1 + Int(seed % 5)
            ),
            random: SeededGenerator(state: seed)
        )
        for _ in 0..<600 {
            let event = world.step(allowShutdown: true)
            world.check(after: event, seed: seed)
        }
        // Shut down, give everything back, finish what is in flight.
        world.apply(world.state.shutdown())
        world.check(after: "shutdown", seed: seed)
        var rounds = 0
        while world.state.lifecycle != .shutDown && rounds < 10_000 {
            rounds += 1
            if let (entry, demand) = world.held.popLast() {
                world.apply(
                    demand == .statement
                        ? world.state.statementFinished(on: entry.id, reusable: true, now: world.now)
                        : world.state.released(entry.id, reusable: true, now: world.now)
                )
            } else if world.pendingConnects > 0 {
                world.pendingConnects -= 1
                let connection = Connection(-rounds)
                world.live.insert(ObjectIdentifier(connection))
                world.apply(world.state.connected(connection, now: world.now))
            } else if let (entry, waiter) = world.pendingChecks.popLast() {
                world.finishCheck(entry, for: waiter, healthy: true)
            } else if !world.pendingCloses.isEmpty {
                world.pendingCloses.removeLast()
                world.apply(world.state.closed())
            } else {
                break
            }
            world.check(after: "drain", seed: seed)
        }
        let context = Comment(rawValue: "seed \(seed)")
        #expect(world.state.lifecycle == .shutDown, context)
        #expect(world.shutdownCompletions == 1, context)
        #expect(world.live.isEmpty, context)
        #expect(world.waiting.isEmpty, context)
        #expect(world.state.waiters.isEmpty && world.state.idle.isEmpty && world.state.leased.isEmpty, context)
        // Timers left are those that fire into a shut-down machine, which ignores them.
        for timer in world.timers.keys {
            #expect(world.state.timerFired(timer, now: world.now).isEmpty, context)
        }
    }
}
