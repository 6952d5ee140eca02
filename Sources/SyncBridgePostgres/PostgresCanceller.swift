import CLibPQ
import SyncBridge
public import SyncBridgeSQL

/// Sends cancel requests for one connection's running statement, without blocking the caller.
///
/// `PQcancel` opens a connection to the server and waits for it to act, which takes a round trip
/// and, with a server that stopped answering, forever. So `cancel()` only queues the request on
/// one of a few cancel threads shared by the process and returns; the connection's thread calls
/// ``settle()`` before its next statement, so that a cancel meant for a statement that has just
/// finished never reaches the next one.
public final class PostgresCanceller: SQLCanceller {
    /// libpq's `PGcancel` for one connection: a copy of what a cancel request needs (address,
    /// process id, secret key), independent of the `PGconn`.
    private final class Handle: @unchecked Sendable {
        // Safe to share: the pointer is never changed, `PQcancel` is documented as safe to call
        // from any thread, and `PQfreeCancel` runs only in `deinit`, when no thread holds it.
        let pointer: OpaquePointer

        init(_ pointer: OpaquePointer) {
            self.pointer = pointer
        }

        deinit {
            PQfreeCancel(pointer)
        }
    }

    /// The threads that send cancel requests, for every connection of the process.
    private static let senders = BlockingPool(name: "sb-pg-cancel", threadCount: 2)

    private let handle: Locked<Handle?>
    private let condition = ConditionLock()
    private let pending = Locked(0)

    init(_ handle: OpaquePointer?) {
        self.handle = Locked(handle.map(Handle.init))
    }

    /// Asks the server to cancel the statement running now, if any. Does not block: the request
    /// is sent from a cancel thread.
    public func cancel() {
        guard let handle = handle.current else { return }
        let (condition, pending) = (self.condition, self.pending)
        condition.withLock { pending.withLock { $0 += 1 } }
        let queued = Self.senders.runDetached {
            var buffer = [CChar](repeating: 0, count: 256)
            _ = PQcancel(handle.pointer, &buffer, Int32(buffer.count))
            condition.withLock {
                pending.withLock { $0 -= 1 }
                condition.broadcast()
            }
        }
        if !queued { condition.withLock { pending.withLock { $0 -= 1 } } }
    }

    /// Waits until every cancel request queued for this connection has reached the server (at
    /// most 10 s).
    ///
    /// - Throws: ``PostgresError`` with kind ``PostgresError/Kind/connectionClosed`` when one is
    ///   still pending then (the server does not answer): the connection is discarded.
    public func settle() throws {
        if pending.current == 0 { return }
        let deadline = monotonicNanoseconds() + 10_000_000_000
        condition.lock()
        defer { condition.unlock() }
        while pending.current > 0 {
            if !condition.wait(untilMonotonicNanoseconds: deadline) && pending.current > 0 {
                throw PostgresError(
                    kind: .connectionClosed,
                    message:
                        "a cancel request for this connection did not reach the server; the connection is discarded",
                    sqlState: "08006"
                )
            }
        }
    }

    /// The connection is closing: later `cancel()` calls do nothing. A request being sent keeps
    /// its handle until it is done.
    public func invalidate() {
        handle.withLock { $0 = nil }
    }
}
