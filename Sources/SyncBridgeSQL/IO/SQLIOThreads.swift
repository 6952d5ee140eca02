package import SyncBridge

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A few threads that serve the statements of many connections, each waiting on all of its
/// connections' sockets at once (epoll) with the C client's non-blocking API.
///
/// Connections use them by default (``processDefault``, which is ``shared``), or threads of
/// their own (`ioThreads:`): each connection belongs to one of the threads, chosen in turn. Its single statements are sent and read there,
/// without a thread of its own waking up for each, and those that queue on the connection are
/// pipelined (sent without waiting for the ones before, each ending alone; see
/// ``SQLNonBlockingSession/pipelineCapacity``); transactions' control statements, streams,
/// COPY and `withRawConnection` still run blocking calls on the connection's own thread, with
/// the I/O thread leaving the connection alone meanwhile. That thread exits once it has had no
/// such work for ``connectionThreadIdleLifetime`` and the next starts it again, so a pool whose
/// statements the I/O threads serve keeps few threads besides them. Sessions that do not implement
/// ``SQLNonBlockingSession``, or whose connection cannot be served without blocking (see
/// ``SQLNonBlockingSession/usesIOThreads``), ignore the threads.
///
/// Pass threads of your own to keep a client's connections apart from the others, or ``off`` to
/// run every statement on its connection's own thread, blocking in the C client:
///
/// ```swift
/// var pool = ConnectionPoolConfiguration()
/// pool.maximumConnections = 64
/// let client = PostgresClient(
///     connectionString: "postgres://app@db/app",
///     configuration: pool,
///     ioThreads: SQLIOThreads(count: 2, name: "sb-io-reports")
/// )
/// ```
public final class SQLIOThreads: Sendable {
    package let threads: [IOThread]
    private let next = Locked(0)

    /// Starts `count` I/O threads named `<name>-N`.
    ///
    /// - Parameters:
    ///   - count: How many threads; one per core is plenty (each serves hundreds of
    ///     connections).
    ///   - name: The threads' name prefix (the kernel keeps 15 bytes of a thread's name).
    public init(count: Int, name: String = "sb-io") {
        precondition(count > 0, "SQLIOThreads needs at least one thread")
        threads = (1...count).map { number in IOThread(name: "\(name)-\(number)") }
    }

    private init() {
        threads = []
    }

    /// No I/O threads: each connection runs its statements on its own thread, blocking in the C
    /// client, and every statement wakes that thread. Pipelining needs I/O threads; the blocking
    /// model costs a thread wake-up per statement (see the README's figures).
    public static let off = SQLIOThreads()

    /// Whether these are real threads (not ``off``).
    package var areOn: Bool { !threads.isEmpty }

    /// How long a connection's own thread stays without blocking work before it exits, when the
    /// connection uses I/O threads; its next blocking work (a stream, a rollback,
    /// `withRawConnection`) starts a thread again, which costs tens of microseconds. With ``off``
    /// each connection keeps its thread.
    public static let connectionThreadIdleLifetime: Duration = .seconds(1)

    /// One I/O thread per core, at most four, started on first use and kept for the life of the
    /// process.
    public static let shared = SQLIOThreads(
        count: min(4, max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))),
        name: "sb-io"
    )

    /// The I/O threads of connections made without any: ``shared``, or ``off`` (a thread per
    /// connection) when the environment variable `SYNCBRIDGE_IO_THREADS` is `0` at start-up (to
    /// run an application on a thread per connection without changing its code).
    public static let processDefault: SQLIOThreads =
        getenv("SYNCBRIDGE_IO_THREADS").map { String(cString: $0) } == "0" ? off : shared

    /// The threads as task executors, for tasks that mostly await statements on these threads'
    /// connections: a task that prefers one of them (`withTaskExecutorPreference(_:operation:)`,
    /// or `addTask(executorPreference:operation:)` in a task group) runs on that thread, and
    /// resumes there when its statement is answered, where on the cooperative pool every
    /// statement would wake one of its threads. The pool leases such a task a connection that its
    /// thread serves first (an idle one, or a lane at most one statement busier than the least
    /// loaded).
    ///
    /// ```swift
    /// let io = SQLIOThreads(count: 2, name: "sb-io-jobs")
    /// try await withTaskExecutorPreference(io.taskExecutors[0]) {
    ///     for id in batch { try await client.execute("UPDATE jobs SET done = true WHERE id = \(id)") }
    /// }
    /// ```
    ///
    /// The threads also serve every other connection's sockets: code that runs on them must
    /// not block (no blocking call, no long computation), as on a SwiftNIO event loop. They are
    /// marked as event loops (`EventLoopThreads`): a guarded wait there is refused with
    /// `GuardedWaitError.Reason.eventLoopThread(_:)`. Empty for ``off``.
    public var taskExecutors: [any TaskExecutor] { threads }

    /// The thread for the next connection (each in turn).
    package func nextThread() -> IOThread {
        precondition(areOn, "SyncBridge bug: a connection asked SQLIOThreads.off for a thread")
        let index = next.withLock { next in
            defer { next = (next + 1) % threads.count }
            return next
        }
        return threads[index]
    }

    /// Ends the threads. Close every connection that uses them first: connections still open
    /// would no longer be served.
    public func shutdown() {
        for thread in threads { thread.shutdown() }
    }
}
