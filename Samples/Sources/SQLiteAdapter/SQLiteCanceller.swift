import CSQLite
public import SyncBridgeSQL
import Synchronization

/// Interrupts one connection's running statement from any thread, with `sqlite3_interrupt`,
/// which SQLite makes safe to call from another thread while the connection is open. The lock
/// keeps the connection from closing while an interrupt is being sent.
public final class SQLiteCanceller: SQLCanceller {
    private let handle: Mutex<SendableHandle?>

    /// `sqlite3*` is used here only to interrupt, which SQLite allows from any thread.
    private struct SendableHandle: @unchecked Sendable {
        // Safe to send: the only call made through it is `sqlite3_interrupt`, documented as
        // thread-safe, and the mutex orders it before `invalidate()` (the connection closes
        // after that).
        let pointer: OpaquePointer
    }

    init(_ handle: OpaquePointer) {
        self.handle = Mutex(SendableHandle(pointer: handle))
    }

    /// Interrupts the running statement: it fails with `SQLITE_INTERRUPT`. Does not block.
    public func cancel() {
        handle.withLock { handle in
            if let handle { sqlite3_interrupt(handle.pointer) }
        }
    }

    /// The connection is closing: later cancels do nothing.
    public func invalidate() {
        handle.withLock { $0 = nil }
    }
}
