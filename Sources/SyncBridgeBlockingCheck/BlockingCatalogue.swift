/// A function or method that blocks the thread that calls it.
package struct BlockingAPI: Sendable, Hashable {
    /// What kind of wait it is; the fix a finding suggests follows from it.
    package enum Category: String, Sendable, Hashable, Codable {
        /// A libpq or Connector/C call that waits for the database server.
        case databaseClient
        /// A sleep.
        case sleep
        /// A semaphore, condition, group or lock wait, or `DispatchQueue.sync`.
        case synchronousWait
        /// File, socket or child-process I/O that waits for the kernel or another process.
        case io
        /// One of SyncBridge's own synchronous waits, which refuse to wait on a cooperative thread.
        case syncBridgeWait
        /// A function the package marks blocking (`Blocking.call`) or its configuration lists.
        case declared
    }

    /// How a call is recognised.
    package enum Shape: Sendable, Hashable {
        /// A free function, by name: `PQexec(…)`, `usleep(…)`.
        case function(String)
        /// A method of a type, called on an instance of it or on the type itself:
        /// `semaphore.wait()` where `semaphore` is a `DispatchSemaphore`, `Thread.sleep(…)`.
        case method(type: String, name: String)
        /// A method whose name is distinctive enough on any receiver: `waitUntilExit()`.
        case anyReceiver(String)
        /// An initializer with a first argument label: `Data(contentsOf:)`.
        case initializer(type: String, label: String)
    }

    /// How a call is recognised.
    package var shape: Shape
    /// What kind of wait it is.
    package var category: Category

    /// The name a finding shows: `PQexec`, `DispatchSemaphore.wait`, `Data(contentsOf:)`.
    package var name: String {
        switch shape {
        case .function(let name), .anyReceiver(let name): name
        case .method(let type, let name): "\(type).\(name)"
        case .initializer(let type, let label): "\(type)(\(label):)"
        }
    }
}

/// The calls the check knows: what blocks, and what runs a closure somewhere other than the
/// calling task's thread.
package struct BlockingCatalogue: Sendable {
    /// The blocking calls.
    package var blocking: [BlockingAPI]
    /// Calls whose closure runs on a thread of its own (a `BlockingPool`, a connection's thread,
    /// a Dispatch queue), by base name: calls inside it are not the calling context's.
    package var offloading: Set<String>
    /// Calls whose closure is accepted blocking (`Blocking.allowed`), by qualified name.
    package var accepting: Set<String>

    /// Finds the blocking API a call matches; with `declaredOnly`, only among those the
    /// configuration adds.
    func match(_ call: ResolvedCall, declaredOnly: Bool = false) -> BlockingAPI? {
        blocking.first { api in
            if declaredOnly && (api.category != .declared || api.shape == .method(type: "Blocking", name: "call")) {
                return false
            }
            switch (api.shape, call.callee) {
            case (.function(let name), .free(let called)):
                return name == called
            case (.method(let type, let name), .member(_, let called)):
                guard name == called, let receiver = call.receiverType else { return false }
                return receiver == type
            case (.anyReceiver(let name), .member(_, let called)):
                return name == called
            case (.initializer(let type, let label), .initializer(let called)),
                (.initializer(let type, let label), .free(let called)):
                return type == called && call.arguments.first?.label == label
            default:
                return false
            }
        }
    }

    /// What the check knows without configuration.
    package static let standard = BlockingCatalogue(
        blocking: libpq + connectorC + posix + foundation + syncBridge,
        offloading: [
            // SyncBridge: a pool's or executor's threads, a connection's own thread.
            "run", "runDetached", "withRawConnection", "withResource", "withResourceDetached",
            // Dispatch and threads.
            "async", "asyncAfter", "detachNewThread", "pthread_create",
        ],
        accepting: ["Blocking.allowed"]
    )

    private static func functions(_ names: [String], _ category: BlockingAPI.Category) -> [BlockingAPI] {
        names.map { BlockingAPI(shape: .function($0), category: category) }
    }

    private static func methods(_ type: String, _ names: [String], _ category: BlockingAPI.Category) -> [BlockingAPI] {
        names.map { BlockingAPI(shape: .method(type: type, name: $0), category: category) }
    }

    /// libpq's blocking functions: the ones `CLibPQ` marks `noasync`.
    static let libpq = functions(
        [
            "PQconnectdb", "PQconnectdbParams", "PQsetdbLogin", "PQreset", "PQping", "PQpingParams",
            "PQexec", "PQexecParams", "PQexecPrepared", "PQprepare", "PQdescribePrepared", "PQdescribePortal",
            "PQgetResult", "PQflush", "PQgetCopyData", "PQputCopyData", "PQputCopyEnd", "PQcancel",
            "PQrequestCancel", "PQencryptPasswordConn",
        ],
        .databaseClient
    )

    /// Connector/C's blocking functions: the ones `CMariaDB` marks `noasync`.
    static let connectorC = functions(
        [
            "mysql_real_connect", "mysql_change_user", "mysql_select_db", "mysql_query", "mysql_real_query",
            "mysql_send_query", "mysql_read_query_result", "mysql_store_result", "mysql_fetch_row",
            "mysql_next_result", "mysql_ping", "mysql_kill", "mysql_commit", "mysql_rollback", "mysql_autocommit",
            "mysql_set_server_option", "mysql_reset_connection", "mysql_stmt_prepare", "mysql_stmt_execute",
            "mysql_stmt_fetch", "mysql_stmt_store_result", "mysql_stmt_next_result", "mysql_stmt_send_long_data",
            "mysql_stmt_reset", "mysql_stmt_close", "mariadb_stmt_execute_direct",
        ],
        .databaseClient
    )

    /// POSIX calls that wait.
    static let posix =
        functions(["sleep", "usleep", "nanosleep", "clock_nanosleep"], .sleep)
        + functions(
            [
                "pthread_cond_wait", "pthread_cond_timedwait", "pthread_join", "pthread_barrier_wait", "sem_wait",
                "sem_timedwait", "waitpid", "wait4", "flock", "lockf",
            ],
            .synchronousWait
        )
        + functions(
            [
                "read", "write", "pread", "pwrite", "readv", "writev", "recv", "recvfrom", "recvmsg", "send",
                "sendto", "sendmsg", "accept", "accept4", "connect", "poll", "ppoll", "select", "pselect",
                "epoll_wait", "fsync", "fdatasync", "system", "getaddrinfo", "gethostbyname",
            ],
            .io
        )

    /// Foundation and Dispatch calls that wait.
    static let foundation =
        methods("Thread", ["sleep"], .sleep)
        + methods("DispatchSemaphore", ["wait"], .synchronousWait)
        + methods("DispatchGroup", ["wait"], .synchronousWait)
        + methods("DispatchWorkItem", ["wait"], .synchronousWait)
        + methods("DispatchQueue", ["sync", "asyncAndWait"], .synchronousWait)
        + methods("NSCondition", ["wait"], .synchronousWait)
        + methods("NSConditionLock", ["lock"], .synchronousWait)
        + methods("NSLock", ["lock"], .synchronousWait)
        + methods("NSRecursiveLock", ["lock"], .synchronousWait)
        + methods("FileHandle", ["read", "readData", "readToEnd", "readDataToEndOfFile"], .io)
        + [
            BlockingAPI(shape: .anyReceiver("waitUntilExit"), category: .io),
            BlockingAPI(shape: .anyReceiver("readDataToEndOfFile"), category: .io),
            BlockingAPI(shape: .initializer(type: "Data", label: "contentsOf"), category: .io),
            BlockingAPI(shape: .initializer(type: "String", label: "contentsOf"), category: .io),
            BlockingAPI(shape: .initializer(type: "String", label: "contentsOfFile"), category: .io),
        ]

    /// SyncBridge's own synchronous waits: on a cooperative thread they throw rather than block,
    /// which is still a failure at run time.
    static let syncBridge =
        functions(["waitForAsync"], .syncBridgeWait)
        + methods("GuardedSemaphore", ["wait"], .syncBridgeWait)
        + methods("BlockingPool", ["syncShutdownGracefully"], .syncBridgeWait)
        + methods("ThreadExecutor", ["syncShutdownGracefully"], .syncBridgeWait)
        + methods("Blocking", ["call"], .declared)
}

extension BlockingAPI.Category {
    /// What to do about a blocking call of this kind reached from an async context.
    func fix(through helper: String?) -> String {
        let move =
            helper.map {
                "run `\($0)` on a SyncBridge thread (`try await pool.run { … }`, or `withRawConnection` for database code) or make it async"
            }
        switch self {
        case .databaseClient:
            return move
                ?? "use the facade's async API, or run the legacy code in `withRawConnection { handle in … }` on the connection's own thread"
        case .sleep:
            return move ?? "use `try await Task.sleep(for:)`"
        case .synchronousWait:
            return move
                ?? "await instead of waiting (an async API, `withCheckedContinuation`, an `AsyncMutex`); synchronous code that must wait runs on a SyncBridge thread with `waitForAsync`"
        case .io:
            return move ?? "run it on a `BlockingPool` (`try await pool.run { … }`)"
        case .syncBridgeWait:
            return move ?? "call it from a SyncBridge thread: on a cooperative thread it throws `GuardedWaitError`"
        case .declared:
            return move ?? "run it on a `BlockingPool` (`try await pool.run { … }`)"
        }
    }
}
