import CMariaDB
import SyncBridge
public import SyncBridgeSQL

/// Sends `KILL QUERY` from a side connection, on a thread of its own for each server: a server
/// that stopped answering holds up the kills meant for it, never those for other servers.
///
/// MariaDB cancels a running statement only when another connection asks (`KILL QUERY <id>`).
/// Opening that connection takes a round trip or more, so the killer keeps its side connection
/// open, on its own thread: interrupt handlers, which must not block, only queue the request here.
final class MariaDBKiller: Sendable {
    private static let killers = Locked<[MariaDBConfiguration: MariaDBKiller]>([:])

    /// The killer for the server of `configuration`.
    static func killer(for configuration: MariaDBConfiguration) -> MariaDBKiller {
        killers.withLock { killers in
            if let killer = killers[configuration] { return killer }
            let killer = MariaDBKiller()
            killers[configuration] = killer
            return killer
        }
    }

    private let sideConnections: ThreadBound<[MariaDBConfiguration: UnsafeMutablePointer<MYSQL>]>

    private init() {
        let executor = ThreadExecutor(name: "sb-mariadb-kill")
        sideConnections = ThreadBound(on: executor, adopting: [:])
    }

    /// Queues `KILL QUERY threadID` on the server of `configuration`; `done` runs after the
    /// server has acted on it (or the attempt failed).
    func killQuery(_ threadID: UInt, on configuration: MariaDBConfiguration, done: @escaping @Sendable () -> Void) {
        sideConnections.withResourceDetached(
            { connections in
                let sql = "KILL QUERY \(threadID)"
                // A side connection that broke (a server restart) is replaced once.
                for _ in 1...2 {
                    let mysql: UnsafeMutablePointer<MYSQL>
                    if let existing = connections[configuration] {
                        mysql = existing
                    } else {
                        var sideConfiguration = configuration
                        sideConfiguration.statementTimeout = nil
                        sideConfiguration.connectTimeout = min(configuration.connectTimeout, .seconds(5))
                        // A server that stopped answering holds the kill thread 5 s at most.
                        sideConfiguration.readTimeout = min(configuration.readTimeout, .seconds(5))
                        sideConfiguration.writeTimeout = min(configuration.writeTimeout, .seconds(5))
                        guard let opened = try? MariaDBSession.connectHandle(sideConfiguration) else { break }
                        connections[configuration] = opened
                        mysql = opened
                    }
                    if mysql_real_query(mysql, sql, UInt(sql.utf8.count)) == 0 { break }
                    // 1094: no such thread (the connection is gone already): nothing to do.
                    if mysql_errno(mysql) == 1094 { break }
                    mysql_close(mysql)
                    connections[configuration] = nil
                }
                done()
            },
            ifClosed: done
        )
    }
}

/// Cancels the running statement of one connection from any thread, and keeps a cancel from
/// reaching a later statement.
///
/// `cancel()` only queues the `KILL QUERY` (on `MariaDBKiller`) and returns. Before the
/// connection's thread starts its next statement it calls `waitForPendingKills()`, so a kill
/// that was meant for a statement that has just finished lands while the connection is idle,
/// where MariaDB ignores it, and never on the next statement.
public final class MariaDBCanceller: SQLCanceller {
    private let configuration: MariaDBConfiguration
    private let condition = ConditionLock()
    private let pending = Locked(0)

    init(threadID: UInt, configuration: MariaDBConfiguration) {
        self.threadID = threadID
        self.configuration = configuration
    }

    /// The server's id of the connection whose statements this cancels.
    let threadID: UInt

    /// Asks the server to interrupt the connection's running statement. Does not block.
    public func cancel() {
        condition.withLock { pending.withLock { $0 += 1 } }
        MariaDBKiller.killer(for: configuration).killQuery(threadID, on: configuration) { [condition, pending] in
            condition.withLock {
                pending.withLock { $0 -= 1 }
                condition.broadcast()
            }
        }
    }

    /// Whether a `KILL QUERY` is still queued or being sent.
    public var hasPendingCancels: Bool { pending.current > 0 }

    /// Waits until every queued kill has reached the server (at most 10 s), so that none can
    /// interrupt the next statement.
    ///
    /// - Throws: ``MariaDBError`` with kind ``MariaDBError/Kind/connectionClosed`` when one is still
    ///   pending then: the connection is discarded.
    public func settle() throws {
        guard waitForPendingKills() else {
            throw MariaDBError(
                kind: .connectionClosed,
                message: "a KILL QUERY for this connection did not finish; the connection is discarded"
            )
        }
    }

    /// Waits until every queued kill has reached the server, at most `timeout`. Returns `false`
    /// when one is still pending then: the caller should treat the connection as unusable.
    func waitForPendingKills(timeout: Duration = .seconds(10)) -> Bool {
        // The usual case, before every statement: nothing was cancelled.
        if pending.current == 0 { return true }
        let deadline = monotonicNanoseconds() + UInt64(max(0, timeout.nanosecondCount))
        condition.lock()
        defer { condition.unlock() }
        while pending.current > 0 {
            if !condition.wait(untilMonotonicNanoseconds: deadline) { return pending.current == 0 }
        }
        return true
    }
}
