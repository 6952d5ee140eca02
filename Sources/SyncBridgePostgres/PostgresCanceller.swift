import CLibPQ
import SyncBridge
public import SyncBridgeSQL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Sends cancel requests for one connection's running statement, without blocking the caller.
///
/// A cancel request opens a connection to the server and waits for it to act, which takes a
/// round trip and, with a server that stopped answering, forever. So `cancel()` only queues the
/// request for the cancel threads of the connection's server and returns; the connection's
/// thread calls ``settle()`` before its next statement, so that a cancel meant for a statement
/// that has just finished never reaches the next one.
///
/// With libpq 17 or later at run time, the request uses libpq's cancel connections
/// (`PQcancelCreate`, `PQcancelBlocking`), which are encrypted like the session they cancel;
/// with an older libpq, `PQcancel`, which sends the request in plain text (see
/// ``usesCancelConnections``).
public final class PostgresCanceller: SQLCanceller {
    /// What sends one request: libpq 17's cancel connection, or the older `PGcancel`. Both are
    /// independent of the `PGconn`, so a request may still be sent after the connection closed.
    private final class Handle: @unchecked Sendable {
        // Safe to share: `send()` is the only use, serialised by `lock` (a cancel connection is
        // not thread-safe; `PQcancel` is, and the lock costs it nothing); the handle is freed
        // only in `deinit`, when no thread holds it.
        let pointer: OpaquePointer
        let isCancelConnection: Bool
        private let lock = Locked(())

        init(pointer: OpaquePointer, isCancelConnection: Bool) {
            self.pointer = pointer
            self.isCancelConnection = isCancelConnection
        }

        func send() {
            lock.withLock { _ in
                if isCancelConnection, let api = CancelConnectionAPI.available {
                    _ = api.blocking(pointer)
                    api.reset(pointer)
                } else {
                    var buffer = [CChar](repeating: 0, count: 256)
                    _ = PQcancel(pointer, &buffer, Int32(buffer.count))
                }
            }
        }

        deinit {
            if isCancelConnection, let api = CancelConnectionAPI.available {
                api.finish(pointer)
            } else {
                PQfreeCancel(pointer)
            }
        }
    }

    /// libpq 17's cancel-connection functions, found at run time (the headers SyncBridge builds
    /// with may be older).
    private struct CancelConnectionAPI {
        typealias Create = @convention(c) (OpaquePointer?) -> OpaquePointer?
        typealias Blocking = @convention(c) (OpaquePointer?) -> Int32
        typealias Action = @convention(c) (OpaquePointer?) -> Void

        let create: Create
        let blocking: Blocking
        let reset: Action
        let finish: Action

        /// The functions, when the libpq loaded in this process has them.
        static let available: CancelConnectionAPI? = {
            func symbol<T>(_ name: String, as type: T.Type) -> T? {
                // RTLD_DEFAULT: every library loaded in the process.
                guard let address = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
                return unsafeBitCast(address, to: type)
            }
            guard PQlibVersion() >= 170_000,
                let create = symbol("PQcancelCreate", as: Create.self),
                let blocking = symbol("PQcancelBlocking", as: Blocking.self),
                let reset = symbol("PQcancelReset", as: Action.self),
                let finish = symbol("PQcancelFinish", as: Action.self)
            else { return nil }
            return CancelConnectionAPI(create: create, blocking: blocking, reset: reset, finish: finish)
        }()
    }

    /// Whether cancel requests use libpq 17's cancel connections (encrypted on TLS sessions), or
    /// `PQcancel` with an older libpq (in plain text).
    public static var usesCancelConnections: Bool { CancelConnectionAPI.available != nil }

    /// The threads that send cancel requests to each server (by `host:port`): a server that
    /// stopped answering holds up the requests meant for it, never those for other servers.
    private static let senders = Locked<[String: BlockingPool]>([:])

    /// Cancel requests sent to one server at once. Each opens a connection that the server
    /// serves with a process of its own (PostgreSQL 15 forks one for every connection): on a
    /// loaded machine one takes from a few milliseconds to most of a second (measured here
    /// beside the whole test suite: up to 0.75 s). Sent one at a time, a burst of cancels also
    /// queued for up to a second: together close to the 2 s grace period, past which the
    /// connection is abandoned.
    static let sendersPerServer = 4

    private static func sender(for server: String) -> BlockingPool {
        senders.withLock { senders in
            if let sender = senders[server] { return sender }
            let sender = BlockingPool(name: "sb-pg-cancel", threadCount: sendersPerServer)
            senders[server] = sender
            return sender
        }
    }

    private let handle: Locked<Handle?>
    private let sender: BlockingPool
    private let condition = ConditionLock()
    private let pending = Locked(0)

    /// A canceller for `connection`, whose server is `server` (`host:port`); called on the
    /// connection's thread.
    init(connection: OpaquePointer, server: String) {
        sender = Self.sender(for: server)
        let handle: Handle?
        if let api = CancelConnectionAPI.available, let cancelConnection = api.create(connection) {
            handle = Handle(pointer: cancelConnection, isCancelConnection: true)
        } else {
            handle = PQgetCancel(connection).map { Handle(pointer: $0, isCancelConnection: false) }
        }
        self.handle = Locked(handle)
    }

    /// Asks the server to cancel the statement running now, if any. Does not block: the request
    /// is sent from a cancel thread.
    public func cancel() {
        guard let handle = handle.current else { return }
        let (condition, pending) = (self.condition, self.pending)
        condition.withLock { pending.withLock { $0 += 1 } }
        let queued = sender.runDetached {
            handle.send()
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

    /// Whether a cancel request is still queued or being sent.
    public var hasPendingCancels: Bool { pending.current > 0 }

    /// The connection is closing: later `cancel()` calls do nothing. A request being sent keeps
    /// its handle until it is done.
    public func invalidate() {
        handle.withLock { $0 = nil }
    }
}
