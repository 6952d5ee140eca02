import SyncBridge

/// The commit-or-roll-back logic both facades' `withTransaction` share: a transaction at the
/// outermost level, a savepoint at every level inside it. One per connection: it counts how
/// deeply transactions are nested on it.
package final class SQLTransactionNesting: Sendable {
    private let depth = Locked(0)

    /// No transaction open.
    package init() {}

    /// Runs `body` one level deeper than the transactions already open: begins (`begin`, or a
    /// savepoint), commits (or releases the savepoint) when `body` returns, and rolls back (to the
    /// savepoint) when it throws, when the task is cancelled, or when the commit fails.
    ///
    /// - Parameters:
    ///   - begin: The statements that start the outermost transaction.
    ///   - start: Starts the outermost transaction with `begin` (runs it, or holds it for the
    ///     transaction's first statement).
    ///   - execute: Runs one control statement.
    ///   - executeIgnoringCancellation: Runs the rollback statements even when the task is
    ///     cancelled, and logs rather than throws their failure.
    ///   - ended: Called when the outermost transaction ends, however it ends.
    ///   - body: The work.
    /// - Returns: What `body` returns.
    package func run<Result: Sendable>(
        begin: [String],
        start: ([String]) async throws -> Void,
        execute: (String) async throws -> Void,
        executeIgnoringCancellation: ([String]) async -> Void,
        ended: () -> Void,
        _ body: () async throws -> Result
    ) async throws -> Result {
        let depth = self.depth.withLock { depth in
            depth += 1
            return depth
        }
        defer {
            if depth == 1 { ended() }
            self.depth.withLock { $0 -= 1 }
        }
        let savepoint = "sb_savepoint_\(depth)"
        if depth == 1 {
            try await start(begin)
        } else {
            try await execute("SAVEPOINT \(savepoint)")
        }
        let rollBack =
            depth == 1 ? ["ROLLBACK"] : ["ROLLBACK TO SAVEPOINT \(savepoint)", "RELEASE SAVEPOINT \(savepoint)"]
        let result: Result
        do {
            result = try await body()
            try Task.checkCancellation()
        } catch {
            await executeIgnoringCancellation(rollBack)
            throw error
        }
        do {
            try await execute(depth == 1 ? "COMMIT" : "RELEASE SAVEPOINT \(savepoint)")
        } catch {
            await executeIgnoringCancellation(rollBack)
            throw error
        }
        return result
    }
}
