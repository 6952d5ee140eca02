import CLibPQ
import SyncBridge
public import SyncBridgeSQL

/// Sends cancel requests for one connection's running statement, from any thread.
///
/// libpq's `PGcancel` is made for exactly this: `PQcancel` is safe to call from another thread
/// than the connection's. The lock keeps it from being freed while a cancel is being sent.
public final class PostgresCanceller: SQLCanceller {
    private let handle: Locked<OpaquePointer?>

    init(_ handle: OpaquePointer?) {
        self.handle = Locked(handle)
    }

    /// Asks the server to cancel the statement running now, if any.
    public func cancel() {
        handle.withLock { handle in
            guard let handle else { return }
            var buffer = [CChar](repeating: 0, count: 256)
            _ = PQcancel(handle, &buffer, Int32(buffer.count))
        }
    }

    /// Frees the handle; later `cancel()` calls do nothing.
    public func invalidate() {
        handle.withLock { handle in
            if let current = handle { PQfreeCancel(current) }
            handle = nil
        }
    }
}
