import CSyncBridgeShims

/// One lock held by the current thread or task, in a list from the newest.
final class HeldLock: Sendable {
    let lockClass: String
    let kind: String
    let instance: UInt64
    let callSite: CallSite
    /// Held by the code that waits for this task in a guarded wait, not by the task itself: it
    /// counts for lock order (the waiter keeps it until the task's work is done), not as a lock
    /// the task could take again.
    let isHeldByWaiter: Bool
    let next: HeldLock?

    init(
        lockClass: String,
        kind: String,
        instance: UInt64,
        callSite: CallSite,
        isHeldByWaiter: Bool = false,
        next: HeldLock?
    ) {
        self.lockClass = lockClass
        self.kind = kind
        self.instance = instance
        self.callSite = callSite
        self.isHeldByWaiter = isHeldByWaiter
        self.next = next
    }

    /// `locks` (newest first) as a task's list, marked as held by the task's waiter.
    static func heldByWaiter(_ locks: [HeldLock]) -> HeldLock? {
        locks.reversed().reduce(nil) { next, lock in
            HeldLock(
                lockClass: lock.lockClass,
                kind: lock.kind,
                instance: lock.instance,
                callSite: lock.callSite,
                isHeldByWaiter: true,
                next: next
            )
        }
    }

    var all: [HeldLock] {
        var result: [HeldLock] = []
        var node: HeldLock? = self
        while let current = node {
            result.append(current)
            node = current.next
        }
        return result
    }

    /// The locks of SyncBridge the calling thread holds (``CheckedMutex``) and the calling task
    /// holds (``AsyncMutex``), newest first.
    static var current: [HeldLock] {
        (threadList?.all ?? []) + (taskList?.all ?? [])
    }

    /// The ``AsyncMutex`` locks the current task holds.
    @TaskLocal static var taskList: HeldLock?

    /// The ``CheckedMutex`` locks the calling thread holds.
    static var threadList: HeldLock? {
        sb_held_locks().map { Unmanaged<HeldLock>.fromOpaque($0).takeUnretainedValue() }
    }

    static func pushOnThread(_ node: HeldLock) {
        sb_set_held_locks(Unmanaged.passRetained(node).toOpaque())
    }

    /// Removes the newest lock of the calling thread's list.
    static func popFromThread() {
        guard let pointer = sb_held_locks() else { return }
        let node = Unmanaged<HeldLock>.fromOpaque(pointer)
        let next = node.takeUnretainedValue().next
        sb_set_held_locks(next.map { Unmanaged.passRetained($0).toOpaque() })
        node.release()
    }
}

/// The order in which lock classes have been taken, process-wide, as Linux's lockdep keeps it: an
/// edge A → B for every acquisition of a lock of class B while one of class A was held. Taking
/// B → … → A later closes a cycle: an inversion, reported at once with both acquisition sites,
/// even though no hang happened (it needs two parties at the same moment).
enum LockOrder {
    struct Edge {
        let fromSite: CallSite
        let toSite: CallSite
        let party: String
    }

    private struct State {
        var edges: [String: [String: Edge]] = [:]
        var reported: Set<[String]> = []
    }

    private static let state = Locked(State())

    /// Records that `party` takes a lock of `lockClass` at `callSite` while holding `held`;
    /// returns the inversion report when this order contradicts one seen before.
    static func acquiring(
        _ lockClass: String,
        kind: String,
        at callSite: CallSite,
        holding held: [HeldLock],
        party: Party
    ) -> DeadlockReport? {
        guard !held.isEmpty else { return nil }
        return state.withLock { state -> DeadlockReport? in
            var report: DeadlockReport?
            for holding in held where holding.lockClass != lockClass {
                if state.edges[holding.lockClass]?[lockClass] != nil { continue }
                if report == nil, let path = path(from: lockClass, to: holding.lockClass, state.edges) {
                    let pair = [holding.lockClass, lockClass].sorted()
                    if state.reported.insert(pair).inserted {
                        report = inversionReport(
                            lockClass,
                            kind: kind,
                            at: callSite,
                            holding: holding,
                            party: party,
                            earlier: path
                        )
                    }
                }
                state.edges[holding.lockClass, default: [:]][lockClass] = Edge(
                    fromSite: holding.callSite,
                    toSite: callSite,
                    party: party.label
                )
            }
            return report
        }
    }

    /// The edges of a path `from` →* `to`, if the recorded order has one.
    private static func path(from: String, to: String, _ edges: [String: [String: Edge]]) -> [(String, String, Edge)]? {
        var previous: [String: (String, Edge)] = [:]
        var queue = [from]
        var visited: Set<String> = [from]
        while !queue.isEmpty {
            let node = queue.removeFirst()
            if node == to {
                var path: [(String, String, Edge)] = []
                var current = to
                while current != from, let (parent, edge) = previous[current] {
                    path.insert((parent, current, edge), at: 0)
                    current = parent
                }
                return path
            }
            for (next, edge) in edges[node] ?? [:] where visited.insert(next).inserted {
                previous[next] = (node, edge)
                queue.append(next)
            }
        }
        return nil
    }

    private static func inversionReport(
        _ lockClass: String,
        kind: String,
        at callSite: CallSite,
        holding: HeldLock,
        party: Party,
        earlier path: [(String, String, Edge)]
    ) -> DeadlockReport {
        var chain: [DeadlockReport.Step] = [
            .init(party: party.label, action: "takes", object: "\(kind) \"\(lockClass)\"", callSite: "\(callSite)"),
            .init(
                party: "  while holding",
                action: "\(holding.kind) \"\(holding.lockClass)\", taken",
                object: "",
                callSite: "\(holding.callSite)"
            ),
        ]
        for (from, to, edge) in path {
            chain.append(
                .init(party: "earlier, \(edge.party)", action: "took", object: "\"\(to)\"", callSite: "\(edge.toSite)")
            )
            chain.append(
                .init(party: "  while holding", action: "\"\(from)\", taken", object: "", callSite: "\(edge.fromSite)")
            )
        }
        return DeadlockReport(
            pattern: .lockOrderInversion,
            headline:
                "lock classes \"\(holding.lockClass)\" and \"\(lockClass)\" are taken in both orders; two parties doing so at the same time deadlock",
            chain: chain,
            advice: "take \"\(holding.lockClass)\" and \"\(lockClass)\" in one order everywhere, or hold one at a time",
            scopeID: WatchdogScope.current
        )
    }

    /// Forgets the recorded order (tests).
    static func reset() {
        state.withLock { $0 = State() }
    }
}
