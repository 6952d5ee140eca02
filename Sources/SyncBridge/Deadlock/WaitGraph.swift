import CSyncBridgeShims
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Who waits or holds: a task, or a thread that runs no task. A SyncBridge thread that runs a
/// closure submitted with `run` acts for the task that submitted it (that task is suspended until
/// the closure returns), so what the thread waits for, its task waits for.
package struct Party: Hashable, Sendable, CustomStringConvertible {
    package enum Identity: Hashable, Sendable {
        case task(UInt)
        case thread(Int32)
        /// A pooled connection shared by single statements of many tasks: it never waits.
        case statementLane(UInt64)
    }

    package let identity: Identity
    /// The task's name, when it has one.
    private let taskName: String?
    /// The thread a task's closure runs on (a SyncBridge thread acting for the task).
    private let onThread: Int32?
    /// What the party is to the detector, when not obvious (`the work awaited by …`).
    private let role: String?

    package static func == (lhs: Party, rhs: Party) -> Bool { lhs.identity == rhs.identity }
    package func hash(into hasher: inout Hasher) { hasher.combine(identity) }

    /// How reports name it: `task 'name' (0x…)`, `thread sb-pool-1 (tid 42)`. Made only when a
    /// report needs it: thread names are read from the kernel then.
    package var label: String {
        switch identity {
        case .task(let address):
            let hex = "0x" + String(address, radix: 16)
            var label = taskName.map { "task '\($0)' (\(hex))" } ?? "task \(hex)"
            if let onThread { label += " (its closure on thread \(Self.threadDescription(onThread)))" }
            if let role { label += " (\(role))" }
            return label
        case .thread(let tid):
            return "thread \(Self.threadDescription(tid))"
        case .statementLane(let connection):
            return "the statements sharing connection \(connection)"
        }
    }

    package var description: String { label }

    /// The calling task, the task the calling SyncBridge thread acts for, or the calling thread.
    package static var current: Party {
        if let task = withUnsafeCurrentTask(body: { $0.map { unsafeBitCast($0, to: UInt.self) } }) {
            return Party(identity: .task(task), taskName: Task.name, onThread: nil, role: nil)
        }
        let submitter = sb_job_submitter()
        if submitter != 0 {
            return Party(identity: .task(submitter), taskName: nil, onThread: sb_gettid(), role: nil)
        }
        return Party(identity: .thread(sb_gettid()), taskName: nil, onThread: nil, role: nil)
    }

    /// A pooled connection that single statements of many tasks share (a statement lane).
    package static func statementLane(_ connection: UInt64) -> Party {
        Party(identity: .statementLane(connection), taskName: nil, onThread: nil, role: nil)
    }

    /// The party of a task known by its address.
    package static func task(_ address: UInt, role: String? = nil) -> Party {
        Party(identity: .task(address), taskName: nil, onThread: nil, role: role)
    }

    /// `name (tid N)`, the name as the kernel has it now.
    private static func threadDescription(_ tid: Int32) -> String {
        let path = "/proc/self/task/\(tid)/comm"
        guard let file = fopen(path, "r") else { return "tid \(tid)" }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 64)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return "tid \(tid)" }
        let name = String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "tid \(tid)" : "\(name) (tid \(tid))"
    }
}

/// An object that can be held or waited for, named in reports: its description is made only when
/// a report needs it.
///
/// Each resource keeps its holders itself, in the state it already locks to grant and release,
/// so holding costs the detector nothing; the graph asks for them only when it analyses a wait.
package protocol WaitResource: AnyObject, Sendable {
    /// `AsyncMutex "ledger"`, `connection pool 'main' (8 connections)`…
    var waitDescription: String { get }
    /// Who holds it now. Called with the graph's lock held: it must not call into the graph.
    func waitHolders() -> [WaitGraph.Holding]
    /// When a holder last released it (monotonic ns; 0 when unknown): a wait behind a resource
    /// that keeps changing hands is a queue, not a stuck wait.
    var waitLastRelease: UInt64 { get }
}

/// What can be waited for: a lock, a pool, a semaphore, the task a guarded wait awaits.
package enum ResourceKey: Hashable, Sendable {
    case object(UInt64)
}

/// The process-wide wait-for graph of the deadlock detector: who holds which SyncBridge resource
/// (async locks, pool connections, the task a guarded wait awaits), who waits for which, and since
/// when. It is only kept while a ``DeadlockDetector`` runs; otherwise each hook costs one relaxed
/// atomic load.
///
/// A set of waiting parties is deadlocked when none of them can go on: each waits for a resource
/// that nobody outside the set holds, that cannot grow, and whose holders are all in the set (the
/// knot of an OR wait-for graph: a pool's waiter can go on if any holder releases). Cycles through
/// locks, pools and guarded waits are all this one rule.
package enum WaitGraph {
    private static let nextID = Atomic<UInt64>(1)
    /// Whether a detector runs in a mode other than off; read by every hook.
    static let active = Atomic<Bool>(false)

    package static var isActive: Bool { active.load(ordering: .relaxed) }

    /// Whether a detector of a scope (a test's) runs: only then are scopes worth carrying.
    static let scoped = Atomic<Bool>(false)

    static var hasScopedDetectors: Bool { scoped.load(ordering: .relaxed) }

    private static let lastScan = Atomic<UInt64>(0)

    /// Whether the caller should scan the graph now: one detector scans per `interval`, however
    /// many run (tests run many at once).
    static func claimScan(interval: UInt64) -> Bool {
        let now = monotonicNanoseconds()
        let last = lastScan.load(ordering: .relaxed)
        guard now &- last >= interval * 9 / 10 else { return false }
        return lastScan.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
    }

    /// A new resource identifier, for an object that can be held or waited for.
    package static func newResourceID() -> UInt64 {
        nextID.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    /// One holder of a resource: who, and where it took it.
    package struct Holding: Sendable {
        package let party: Party
        package let callSite: CallSite

        package init(party: Party, callSite: CallSite) {
            self.party = party
            self.callSite = callSite
        }
    }

    struct Resource {
        let owner: any WaitResource
        var description: String { owner.waitDescription }
        /// Nobody is known to hold it (a semaphore): a waiter may always be woken by someone.
        var ownerless = false
        /// The resource can serve a waiter without any holder releasing (a pool opening a new
        /// connection).
        var mayGrow = false
        /// Waits for it in the graph.
        var waiters = 0
    }

    final class Wait: @unchecked Sendable {
        // Safe to share: the `var`s are read and written with the graph's lock held.
        let id: UInt64
        let party: Party
        let key: ResourceKey
        let callSite: CallSite
        let since: UInt64
        let scope: UInt64?
        /// Wakes the waiter with an error (throw mode); `nil` when the wait cannot be interrupted.
        let interrupt: (@Sendable (DeadlockError) -> Void)?
        var deadlockReported = false
        var stuckReported = false

        init(
            id: UInt64,
            party: Party,
            key: ResourceKey,
            callSite: CallSite,
            scope: UInt64?,
            interrupt: (@Sendable (DeadlockError) -> Void)?
        ) {
            self.id = id
            self.party = party
            self.key = key
            self.callSite = callSite
            self.since = monotonicNanoseconds()
            self.scope = scope
            self.interrupt = interrupt
        }
    }

    struct State {
        var resources: [ResourceKey: Resource] = [:]
        var waits: [UInt64: Wait] = [:]
        var waitOfParty: [Party.Identity: UInt64] = [:]
    }

    static let state = Locked(State())

    // MARK: Hooks

    /// Whether `key` can serve a waiter without a holder releasing it (a pool below its maximum).
    package static func setMayGrow(_ key: ResourceKey, _ mayGrow: Bool) {
        state.withLock { state in state.resources[key]?.mayGrow = mayGrow }
    }

    /// `party` starts waiting for `key`. When the wait completes a deadlock, it is reported at
    /// once (unless `alreadyReported`), and in throw mode `interrupt` is called with the error
    /// (before this returns, without the graph's lock held).
    /// - Returns: The wait's identifier for ``endWait(_:)``.
    package static func beginWait(
        for key: ResourceKey,
        of owner: any WaitResource,
        by party: Party,
        at callSite: CallSite,
        ownerless: Bool = false,
        mayGrow: Bool = false,
        alreadyReported: Bool = false,
        interrupt: (@Sendable (DeadlockError) -> Void)? = nil
    ) -> UInt64 {
        let wait = Wait(
            id: newResourceID(),
            party: party,
            key: key,
            callSite: callSite,
            scope: WatchdogScope.current,
            interrupt: interrupt
        )
        wait.deadlockReported = alreadyReported
        state.withLock { state in
            if state.resources[key] == nil {
                state.resources[key] = Resource(owner: owner, ownerless: ownerless)
            }
            state.resources[key]?.mayGrow = mayGrow
            state.resources[key]?.waiters += 1
            state.waits[wait.id] = wait
            state.waitOfParty[party.identity] = wait.id
        }
        // The usual answer, found without holding the graph's lock while the resource's is taken
        // (a busy pool's lock is contended by all its users): a holder that does not wait.
        if ownerless || mayGrow { return wait.id }
        let holders = owner.waitHolders()
        if holders.isEmpty { return wait.id }
        let report = state.withLock { state -> (DeadlockReport, Wait)? in
            guard holders.allSatisfy({ state.waitOfParty[$0.party.identity] != nil }) else { return nil }
            return cycleReport(&state, preferring: wait)
        }
        if let (report, victim) = report { DeadlockDetector.handle(report, waits: [victim]) }
        return wait.id
    }

    /// The wait `id` ended (granted, cancelled, failed).
    package static func endWait(_ id: UInt64) {
        state.withLock { state in
            guard let wait = state.waits.removeValue(forKey: id) else { return }
            if state.waitOfParty[wait.party.identity] == id { state.waitOfParty[wait.party.identity] = nil }
            guard var resource = state.resources[wait.key] else { return }
            resource.waiters -= 1
            state.resources[wait.key] = resource.waiters == 0 ? nil : resource
        }
    }

    // MARK: Snapshot

    /// Every wait in progress with its resource's holders, longest wait first, for
    /// ``SyncBridgeSnapshot``. The holders are asked for after the graph's lock is released.
    static func snapshot(now: UInt64) -> SyncBridgeSnapshot.WaitForGraph {
        let waits = state.withLock { state in
            state.waits.values.sorted { $0.since < $1.since }.compactMap { wait in
                state.resources[wait.key].map { (wait, $0.owner, $0.description) }
            }
        }
        return SyncBridgeSnapshot.WaitForGraph(
            waits: waits.map { wait, owner, resource in
                SyncBridgeSnapshot.Wait(
                    waiter: wait.party.description,
                    resource: resource,
                    callSite: wait.callSite.description,
                    waitingForSeconds: SyncBridgeSnapshot.seconds(from: wait.since, to: now),
                    holders: owner.waitHolders().map {
                        SyncBridgeSnapshot.Holder(party: $0.party.description, callSite: $0.callSite.description)
                    }
                )
            }
        )
    }

    // MARK: Detection

    /// With the lock held: the parties that wait and can never go on. A waiting party can go on
    /// when its resource is free, ownerless or can grow, or when one of its holders can go on
    /// (any release serves it). Found backwards from the parties that can, in linear time.
    private static func deadlocked(_ state: State) -> Set<Party.Identity> {
        var waiting: [Party.Identity: Wait] = [:]
        for wait in state.waits.values { waiting[wait.party.identity] = wait }
        var dependents: [Party.Identity: [Party.Identity]] = [:]
        var free: [Party.Identity] = []
        var holdersOf: [ResourceKey: [Holding]] = [:]
        for (identity, wait) in waiting {
            let holders = holdersOf[wait.key] ?? holders(of: wait.key, state)
            holdersOf[wait.key] = holders
            guard let resource = state.resources[wait.key], !resource.ownerless, !resource.mayGrow, !holders.isEmpty,
                !holders.contains(where: { waiting[$0.party.identity] == nil })
            else {
                free.append(identity)
                continue
            }
            for holder in holders { dependents[holder.party.identity, default: []].append(identity) }
        }
        var canGoOn = Set(free)
        while let identity = free.popLast() {
            for dependent in dependents[identity] ?? [] where canGoOn.insert(dependent).inserted {
                free.append(dependent)
            }
        }
        return Set(waiting.keys).subtracting(canGoOn)
    }

    /// With the lock held: whether `wait`'s party can go on, following holders depth first; a
    /// new wait usually reaches a running holder in one step.
    private static func canGoOn(_ wait: Wait, _ state: State) -> Bool {
        var visited: Set<Party.Identity> = []
        var stack = [wait]
        while let current = stack.popLast() {
            guard visited.insert(current.party.identity).inserted else { continue }
            let holders = holders(of: current.key, state)
            guard let resource = state.resources[current.key], !resource.ownerless, !resource.mayGrow, !holders.isEmpty
            else {
                return true
            }
            for holder in holders {
                guard let next = state.waitOfParty[holder.party.identity].flatMap({ state.waits[$0] }) else {
                    return true
                }
                stack.append(next)
            }
        }
        return false
    }

    private static func holders(of key: ResourceKey, _ state: State) -> [Holding] {
        state.resources[key]?.owner.waitHolders() ?? []
    }

    /// With the lock held: a report of the cycle `preferred` is part of, if it is deadlocked and
    /// not yet reported; marks the cycle's waits reported.
    private static func cycleReport(_ state: inout State, preferring preferred: Wait) -> (DeadlockReport, Wait)? {
        guard !preferred.deadlockReported, !canGoOn(preferred, state) else { return nil }
        let stuck = deadlocked(state)
        guard stuck.contains(preferred.party.identity) else { return nil }
        let cycle = cycle(from: preferred, among: stuck, state)
        for wait in cycle { wait.deadlockReported = true }
        preferred.deadlockReported = true
        return (cycleReport(cycle, state), preferred)
    }

    /// With the lock held: every deadlocked wait not yet reported, each cycle once, with the wait
    /// that closed it (the newest) as the victim.
    static func unreportedCycles() -> [(DeadlockReport, Wait)] {
        // The analysis runs on a copy, outside the graph's lock (it asks each resource for its
        // holders, which takes the resource's lock); only a deadlock found there is looked at
        // again, under the lock.
        let copy = state.withLock { $0 }
        guard !deadlocked(copy).isEmpty else { return [] }
        return state.withLock { state in
            var reports: [(DeadlockReport, Wait)] = []
            let stuck = deadlocked(state)
            let candidates = state.waits.values
                .filter { stuck.contains($0.party.identity) && !$0.deadlockReported }
                .sorted { $0.since > $1.since }
            for wait in candidates where !wait.deadlockReported {
                let cycle = cycle(from: wait, among: stuck, state)
                for member in cycle { member.deadlockReported = true }
                wait.deadlockReported = true
                let victim = cycle.max { $0.since < $1.since } ?? wait
                reports.append((cycleReport(cycle, state), victim))
            }
            return reports
        }
    }

    /// Follows holders from `start` within `stuck` until a party repeats; returns the cycle's waits.
    private static func cycle(from start: Wait, among stuck: Set<Party.Identity>, _ state: State) -> [Wait] {
        var path: [Wait] = []
        var seen: [Party.Identity: Int] = [:]
        var current = start
        while seen[current.party.identity] == nil {
            seen[current.party.identity] = path.count
            path.append(current)
            guard
                let next = holders(of: current.key, state).first(where: { stuck.contains($0.party.identity) }),
                let nextWaitID = state.waitOfParty[next.party.identity],
                let nextWait = state.waits[nextWaitID]
            else { return path }
            current = nextWait
        }
        return Array(path[seen[current.party.identity]!...])
    }

    private static func cycleReport(_ cycle: [Wait], _ state: State) -> DeadlockReport {
        var chain: [DeadlockReport.Step] = []
        var objects: [String] = []
        for wait in cycle {
            let object = state.resources[wait.key]?.description ?? "a resource"
            objects.append(object)
            chain.append(
                .init(party: wait.party.label, action: "waits for", object: object, callSite: "\(wait.callSite)")
            )
            let holders = holders(of: wait.key, state)
            for holder in holders {
                chain.append(
                    .init(
                        party: "  held by \(holder.party.label)",
                        action: "who took it",
                        object: "",
                        callSite: "\(holder.callSite)"
                    )
                )
            }
        }
        let parties =
            cycle.count == 1
            ? "a task waits for what it holds itself" : "\(cycle.count) tasks wait for each other in a cycle"
        let pools = objects.contains { $0.hasPrefix("connection pool") }
        return DeadlockReport(
            pattern: .waitCycle,
            headline: "\(parties); none can go on",
            chain: chain,
            advice: pools
                ? "lease from several pools in one order everywhere, and never lease a second connection while holding one (pass the held connection down instead)"
                : "take the locks in one order everywhere, hold one at a time, or await the work instead of waiting for it",
            scopeID: cycle.lazy.compactMap(\.scope).first
        )
    }

    /// Waits not yet reported as stuck during which their resource has not been released for
    /// longer than the threshold of their scope (`threshold(scope)` nanoseconds; `nil` skips the
    /// wait), marked reported, with the chain of holders behind each.
    static func stuckWaits(threshold: (UInt64?) -> UInt64?) -> [DeadlockReport] {
        // Only waits past their threshold can be stuck: found on a copy, without the lock.
        let copy = state.withLock { $0 }
        let early = monotonicNanoseconds()
        guard
            copy.waits.values.contains(where: { wait in
                threshold(wait.scope).map { early - min(early, wait.since) > $0 } ?? false
            })
        else { return [] }
        return state.withLock { state in
            let now = monotonicNanoseconds()
            var reports: [DeadlockReport] = []
            // Each resource is asked once per scan: asking takes its lock, which its users (a
            // pool's thousands of waiters) contend for while this scan holds the graph's.
            var lastRelease: [ResourceKey: UInt64] = [:]
            for wait in state.waits.values where !wait.stuckReported && !wait.deadlockReported {
                guard let threshold = threshold(wait.scope), now - min(now, wait.since) > threshold else { continue }
                let released = lastRelease[wait.key] ?? state.resources[wait.key]?.owner.waitLastRelease ?? 0
                lastRelease[wait.key] = released
                let quietSince = min(now, max(wait.since, released))
                guard now - quietSince > threshold else { continue }
                wait.stuckReported = true
                reports.append(stuckReport(wait, quietFor: now - quietSince, now: now, state))
            }
            return reports
        }
    }

    private static func stuckReport(_ wait: Wait, quietFor quiet: UInt64, now: UInt64, _ state: State) -> DeadlockReport
    {
        var chain: [DeadlockReport.Step] = []
        var visited = Set<Party.Identity>()
        func follow(_ wait: Wait, depth: Int) {
            guard visited.insert(wait.party.identity).inserted, depth < 8 else { return }
            let indent = String(repeating: "  ", count: depth)
            let object = state.resources[wait.key]?.description ?? "a resource"
            let seconds = Double(now &- wait.since) / 1e9
            chain.append(
                .init(
                    party: indent + wait.party.label,
                    action: "has waited \(formatSeconds(seconds)) for",
                    object: object,
                    callSite: "\(wait.callSite)"
                )
            )
            let holders = holders(of: wait.key, state)
            if state.resources[wait.key]?.ownerless == true {
                chain.append(
                    .init(
                        party: indent + "  nobody holds it:",
                        action: "any thread may signal it",
                        object: "",
                        callSite: nil
                    )
                )
            } else if holders.isEmpty {
                chain.append(
                    .init(
                        party: indent + "  nobody holds it yet:",
                        action: "what it waits for has not started (a connection being opened, work not yet scheduled)",
                        object: "",
                        callSite: nil
                    )
                )
            }
            for holder in holders {
                chain.append(
                    .init(
                        party: indent + "  held by \(holder.party.label)",
                        action: "who took it",
                        object: "",
                        callSite: "\(holder.callSite)"
                    )
                )
                if let holderWait = state.waitOfParty[holder.party.identity].flatMap({ state.waits[$0] }) {
                    follow(holderWait, depth: depth + 2)
                } else {
                    chain.append(
                        .init(
                            party: indent + "    which",
                            action: "is running, not waiting for SyncBridge",
                            object: "",
                            callSite: nil
                        )
                    )
                }
            }
        }
        follow(wait, depth: 0)
        return DeadlockReport(
            pattern: .stuckWait,
            headline:
                "a wait for \(state.resources[wait.key]?.description ?? "a resource") has lasted \(formatSeconds(Double(now &- wait.since) / 1e9)), \(formatSeconds(Double(quiet) / 1e9)) of it without any release; no cycle is known",
            chain: chain,
            advice:
                "find why the holders above do not release (a slow query, a lost signal, a leaked lease); give the wait a timeout",
            scopeID: wait.scope
        )
    }

    private static func formatSeconds(_ seconds: Double) -> String {
        let tenths = (seconds * 10).rounded() / 10
        return "\(tenths) s"
    }

    /// Forgets everything (tests).
    package static func reset() {
        state.withLock { $0 = State() }
    }
}
