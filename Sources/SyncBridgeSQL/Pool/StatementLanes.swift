package import SyncBridge

/// Shares pooled connections between single statements.
///
/// A statement that needs no session of its own (a client's `query` or `execute`) does not have
/// to own a connection: it can wait in the
/// queue of a connection's thread, which runs queued statements back to back. So once every
/// connection is busy, further statements join the least loaded connection instead of waiting
/// for one to be handed over, and no connection idles while the next task is being scheduled.
///
/// Each connection used this way is a *lane*: a lease from the pool plus a count of statements
/// in flight on it. A lane goes back to the pool as soon as its last statement ends. Statements
/// only join busy lanes when the pool cannot lease another connection and no task waits for an
/// exclusive connection, so transactions and other exclusive leases are not starved.
package final class StatementLanes<Connection: PooledConnection>: Sendable {
    private let pool: ConnectionPool<Connection>
    private let lanes = Locked<[Lane]>([])

    private final class Lane: Sendable {
        let lease: ConnectionPool<Connection>.Lease
        /// Statements queued or running on the lane; guarded by the lanes' lock.
        let inFlight: Locked<Int>

        init(lease: ConnectionPool<Connection>.Lease) {
            self.lease = lease
            self.inFlight = Locked(1)
        }
    }

    /// Shares `pool`'s connections between single statements.
    package init(pool: ConnectionPool<Connection>) {
        self.pool = pool
    }

    /// Runs `body` on a connection: a new lane while the pool can lease one, otherwise the least
    /// loaded busy lane.
    package func run<Result: Sendable>(at callSite: CallSite, _ body: (Connection) async throws -> Result) async throws -> Result {
        let lane = try await acquireLane(at: callSite)
        do {
            let result = try await body(lane.lease.connection)
            finish(lane)
            return result
        } catch {
            finish(lane)
            throw error
        }
    }

    private func acquireLane(at callSite: CallSite) async throws -> Lane {
        let statistics = pool.statistics
        let poolCanLease = statistics.idle > 0
            || statistics.leased + statistics.connecting < pool.configuration.maximumConnections
        if !poolCanLease && statistics.waiting == 0 {
            let joined = lanes.withLock { lanes -> Lane? in
                guard let lane = lanes.min(by: { $0.inFlight.current < $1.inFlight.current }) else { return nil }
                lane.inFlight.withLock { $0 += 1 }
                return lane
            }
            if let joined { return joined }
        }
        let lane = Lane(lease: try await pool.leaseConnection(at: callSite, sharedByStatements: true))
        lanes.withLock { $0.append(lane) }
        return lane
    }

    /// One statement on `lane` ended; the lane goes back to the pool when it was the last.
    private func finish(_ lane: Lane) {
        let isLast = lanes.withLock { lanes -> Bool in
            let remaining = lane.inFlight.withLock { count -> Int in
                count -= 1
                return count
            }
            guard remaining == 0 else { return false }
            lanes.removeAll { $0 === lane }
            return true
        }
        if isLast { pool.release(lane.lease) }
    }
}
