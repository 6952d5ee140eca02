package import SyncBridge

extension ConnectionPool: SnapshotSource {
    package func snapshotPart(now: UInt64) -> SnapshotPart {
        shared.withLock { shared in
            let state = shared.state
            let leases = state.leased.keys.sorted().map { id -> SyncBridgeSnapshot.Lease in
                let record = shared.leaseRecords[id]
                let lane = state.lanes[id]
                return SyncBridgeSnapshot.Lease(
                    connection: id,
                    kind: lane == nil ? "exclusive" : "statements",
                    callSite: record?.callSite.description ?? "unknown",
                    heldForSeconds: record.map { SyncBridgeSnapshot.seconds(from: $0.since, to: now) } ?? 0,
                    statements: lane
                )
            }
            let waiters = shared.waitRecords.values.sorted { $0.since < $1.since }.map { record in
                SyncBridgeSnapshot.Waiter(
                    kind: record.demand == .statement ? "statement" : "exclusive",
                    callSite: record.callSite.description,
                    waitingForSeconds: SyncBridgeSnapshot.seconds(from: record.since, to: now)
                )
            }
            let circuit =
                state.consecutiveFailures > 0 || state.isCircuitOpen
                ? SyncBridgeSnapshot.Circuit(
                    isOpen: state.isCircuitOpen,
                    consecutiveFailures: state.consecutiveFailures,
                    lastError: shared.lastConnectionError
                ) : nil
            return .pool(
                SyncBridgeSnapshot.Pool(
                    name: name,
                    lifecycle: "\(state.lifecycle)",
                    maximumConnections: configuration.maximumConnections,
                    minimumConnections: configuration.minimumConnections,
                    idleConnections: state.idle.count,
                    openingConnections: state.connecting,
                    checkingConnections: state.checks.count,
                    leases: leases.sorted { $0.heldForSeconds > $1.heldForSeconds },
                    waiters: waiters,
                    circuit: circuit
                )
            )
        }
    }
}
