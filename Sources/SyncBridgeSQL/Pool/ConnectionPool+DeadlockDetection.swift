package import SyncBridge

// The deadlock detector's view of a pool: leases recorded task-locally (a second lease of the
// same pool inside the first is recognised as nested), waiting leases entered in the wait-for
// graph, and the pool's holders, for the detector's analyses.
extension ConnectionPool {
    /// Runs `body` with `lease` recorded as the current task's, while a detector tracks leases.
    func withLeaseRecorded<Result>(
        _ lease: Lease,
        _ body: () async throws -> sending Result
    ) async throws -> sending Result {
        guard let holder = lease.holder else { return try await body() }
        let record = PoolLeaseRecord(
            pool: resourceID,
            callSite: lease.callSite,
            party: holder,
            next: PoolLeaseRecord.current
        )
        let transfer = try await PoolLeaseRecord.$current.withValue(record) {
            SendingTransfer(value: try await body())
        }
        return transfer.value
    }

    /// Enters a waiting lease in the detector's graph, after reporting a nested lease: the task
    /// already holds a connection of this pool, and the pool cannot grow.
    func beginWait(_ waiter: UInt64, party: Party, callSite: CallSite, canGrow: Bool) -> UInt64? {
        let interrupt: @Sendable (DeadlockError) -> Void = { [weak self] error in
            self?.interruptWait(waiter, with: error)
        }
        let resourceDescription = waitDescription
        var reported = false
        // Every lease of this pool the task holds, the oldest first.
        let held: [PoolLeaseRecord] = (PoolLeaseRecord.current?.all { $0.pool == resourceID } ?? []).reversed()
        if !canGrow, !held.isEmpty {
            let holding = held.count == 1 ? "a connection" : "\(held.count) connections"
            var chain: [DeadlockReport.Step] = [
                .init(
                    party: party.label,
                    action: "asks for a \(ordinal(held.count + 1)) connection of",
                    object: resourceDescription,
                    callSite: "\(callSite)"
                )
            ]
            for (index, lease) in held.enumerated() {
                let lead = index == 0 ? "  while holding one" : "  and one"
                chain.append(
                    .init(
                        party: "\(lead), leased by \(lease.party)",
                        action: "",
                        object: "",
                        callSite: "\(lease.callSite)"
                    )
                )
            }
            chain.append(
                .init(
                    party: "  every connection is leased;",
                    action: "this wait ends only when another task releases one",
                    object: "",
                    callSite: nil
                )
            )
            let report = DeadlockReport(
                pattern: .nestedPoolLease,
                headline:
                    "a task that holds \(holding) of \(resourceDescription) asks it for another, and the pool cannot grow",
                chain: chain,
                advice:
                    "run the inner statement on the connection you already hold (pass it down), or lease once for the whole unit of work; with N such tasks at once the pool deadlocks",
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

    /// The records, newest first, that match `predicate`.
    func all(where predicate: (PoolLeaseRecord) -> Bool) -> [PoolLeaseRecord] {
        var matches: [PoolLeaseRecord] = []
        var node: PoolLeaseRecord? = self
        while let record = node {
            if predicate(record) { matches.append(record) }
            node = record.next
        }
        return matches
    }
}

/// The wait-graph entry of one waiting lease, written inside the continuation's closure and ended
/// by the waiting task after it resumes.
final class PoolWaitSlot: @unchecked Sendable {
    // Safe to share: written before the continuation can resume the task (inside its closure, on
    // the waiting task) and read after the task resumed; the continuation orders the two.
    var id: UInt64?

    func end() {
        if let id { WaitGraph.endWait(id) }
    }
}

/// "second", "third", … for a count of connections.
private func ordinal(_ number: Int) -> String {
    let words = [2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth", 9: "ninth"]
    if let word = words[number] { return word }
    let suffix = (11...13).contains(number % 100) ? "th" : [1: "st", 2: "nd", 3: "rd"][number % 10] ?? "th"
    return "\(number)\(suffix)"
}

/// Carries a `sending` result out of `TaskLocal.withValue`, whose result is not `sending`.
struct SendingTransfer<Value>: @unchecked Sendable {
    // Safe: the value comes from a `sending` result, so nothing else refers to it; it is moved
    // out once, on the same task.
    let value: Value
}
