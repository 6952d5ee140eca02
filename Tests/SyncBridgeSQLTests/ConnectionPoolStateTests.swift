import Testing

@testable import SyncBridgeSQL

/// Drives the pool's state machine directly: no connections, no clocks.
@Suite("ConnectionPoolState")
struct ConnectionPoolStateTests {
    final class FakeConnection: Sendable {
        let number: Int
        init(_ number: Int) { self.number = number }
    }

    typealias State = ConnectionPoolState<FakeConnection>

    static let second: UInt64 = 1_000_000_000

    func makeState(minimum: Int = 0, maximum: Int = 2) -> State {
        State(
            limits: .init(
                minimumConnections: minimum,
                maximumConnections: maximum,
                idleTimeout: 60 * Self.second,
                maximumLifetime: 600 * Self.second,
                healthCheckAfterIdle: 10 * Self.second,
                initialBackoff: Self.second / 10,
                maximumBackoff: 2 * Self.second
            )
        )
    }

    func leasedEntry(_ actions: [State.Action], to waiter: UInt64) -> State.Entry? {
        for case .lease(let entry, let target) in actions where target == waiter { return entry }
        return nil
    }

    func connects(_ actions: [State.Action]) -> [UInt64] {
        actions.compactMap { if case .connect(let delay) = $0 { delay } else { nil } }
    }

    @Test("a lease with nothing idle opens a connection and hands it over; a released one is reused")
    func leaseConnectRelease() {
        var state = makeState()
        let first = state.lease(1, now: 0)
        #expect(connects(first) == [0])
        #expect(Array(state.waiters) == [1])
        let connection = FakeConnection(1)
        let entry = leasedEntry(state.connected(connection, now: 1), to: 1)
        #expect(entry?.connection === connection)
        #expect(state.released(entry!.id, reusable: true, now: 2).isEmpty)
        #expect(state.idle.count == 1)
        let again = leasedEntry(state.lease(2, now: 3), to: 2)
        #expect(again?.connection === connection)
    }

    @Test("never more than the maximum; a waiter gets the next released connection")
    func maximum() {
        var state = makeState(maximum: 2)
        #expect(connects(state.lease(1, now: 0)).count == 1)
        #expect(connects(state.lease(2, now: 0)).count == 1)
        #expect(connects(state.lease(3, now: 0)).isEmpty)
        let a = leasedEntry(state.connected(FakeConnection(1), now: 1), to: 1)!
        _ = leasedEntry(state.connected(FakeConnection(2), now: 1), to: 2)!
        #expect(state.totalConnections == 2)
        #expect(Array(state.waiters) == [3])
        let handedOver = leasedEntry(state.released(a.id, reusable: true, now: 2), to: 3)
        #expect(handedOver?.connection === a.connection)
    }

    @Test("a broken connection is closed on release and replaced for the next waiter")
    func brokenConnection() {
        var state = makeState(maximum: 1)
        _ = state.lease(1, now: 0)
        let entry = leasedEntry(state.connected(FakeConnection(1), now: 0), to: 1)!
        _ = state.lease(2, now: 0)
        let actions = state.released(entry.id, reusable: false, now: 1)
        #expect(actions.contains { if case .close(let c) = $0 { c === entry.connection } else { false } })
        #expect(connects(actions) == [0])
    }

    @Test("abandoned waiters are failed once; served ones are not")
    func abandon() {
        var state = makeState()
        _ = state.lease(1, now: 0)
        guard case .fail(1, .timedOut)? = state.abandon(1, because: .timedOut).first else {
            Issue.record("expected a timeout failure")
            return
        }
        #expect(state.abandon(1, because: .timedOut).isEmpty)
        // The connection opened for it goes idle.
        _ = state.connected(FakeConnection(1), now: 1)
        #expect(state.idle.count == 1)
    }

    @Test("failed attempts back off exponentially, capped, and a success resets it")
    func backoff() {
        var state = makeState(maximum: 1)
        #expect(connects(state.lease(1, now: 0)) == [0])
        #expect(connects(state.connectFailed(now: 1)) == [Self.second / 10])
        #expect(connects(state.connectFailed(now: 2)) == [Self.second / 5])
        #expect(connects(state.connectFailed(now: 3)) == [2 * Self.second / 5])
        for _ in 0..<10 { _ = state.connectFailed(now: 4) }
        #expect(state.backoff == 2 * Self.second)
        _ = state.connected(FakeConnection(1), now: 5)
        #expect(state.backoff == 0)
    }

    @Test("a connection idle past the threshold is health-checked before it is leased")
    func healthCheck() {
        var state = makeState()
        _ = state.lease(1, now: 0)
        let entry = leasedEntry(state.connected(FakeConnection(1), now: 0), to: 1)!
        _ = state.released(entry.id, reusable: true, now: 0)
        let actions = state.lease(2, now: 11 * Self.second)
        guard case .checkHealth(let checked, for: 2)? = actions.first else {
            Issue.record("expected a health check")
            return
        }
        let retry = state.healthChecked(checked, healthy: false, for: 2, now: 11 * Self.second)
        #expect(retry.contains { if case .close = $0 { true } else { false } })
        #expect(connects(retry) == [0])
        #expect(Array(state.waiters) == [2])
    }

    @Test("upkeep closes idle connections above the minimum and keeps the minimum open")
    func maintenance() {
        var state = makeState(minimum: 1, maximum: 3)
        #expect(connects(state.maintain(now: 0)).count == 1)
        _ = state.connected(FakeConnection(1), now: 0)
        _ = state.lease(1, now: 0)
        _ = state.lease(2, now: 0)
        let a = state.leased.values.first!
        let b = leasedEntry(state.connected(FakeConnection(2), now: 0), to: 2)!
        _ = state.released(a.id, reusable: true, now: 1)
        _ = state.released(b.id, reusable: true, now: 1)
        #expect(state.idle.count == 2)
        let closes = state.maintain(now: 70 * Self.second).filter { if case .close = $0 { true } else { false } }
        #expect(closes.count == 1)
        #expect(state.idle.count == 1)
    }

    @Test("shutdown fails waiters, closes idle connections and completes when leases come back")
    func shutdown() {
        var state = makeState(maximum: 1)
        _ = state.lease(1, now: 0)
        let entry = leasedEntry(state.connected(FakeConnection(1), now: 0), to: 1)!
        _ = state.lease(2, now: 0)
        let actions = state.shutdown()
        #expect(actions.contains { if case .fail(2, .shutDown) = $0 { true } else { false } })
        #expect(!actions.contains { if case .shutdownComplete = $0 { true } else { false } })
        guard case .fail(3, .shutDown)? = state.lease(3, now: 1).first else {
            Issue.record("expected a refusal")
            return
        }
        let done = state.released(entry.id, reusable: true, now: 2)
        #expect(done.contains { if case .close = $0 { true } else { false } })
        #expect(done.contains { if case .shutdownComplete = $0 { true } else { false } })
        #expect(state.lifecycle == .shutDown)
    }
}
