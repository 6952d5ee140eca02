import Foundation
import Logging
import SyncBridge

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A real, throwaway PgBouncer in front of a ``TemporaryPostgres``, for tests of code that runs
/// behind a connection pooler: its own folder, a free loopback port, the server's database under
/// the same name. ``stop()`` stops it and deletes its folder; so does the end of the process.
///
/// ```swift
/// let server = try await TemporaryPostgres.shared()
/// let bouncer = try await TemporaryPgBouncer.start(in: server, poolMode: .transaction, poolSize: 4)
/// let client = PostgresClient(configuration: .behindTransactionPooler(bouncer.connectionString))
/// ```
///
/// Finds `pgbouncer` in PATH or `/usr/sbin`; when it is missing the error says which package to
/// install. As root it runs as the `postgres` user (PgBouncer refuses to run as root).
public final class TemporaryPgBouncer: Sendable {
    /// When PgBouncer hands a server connection back to its pool.
    public enum PoolMode: String, Sendable {
        /// When the client disconnects: a client keeps its server connection.
        case session
        /// At the end of each transaction: clients share server connections between transactions.
        case transaction
    }

    /// The TCP port on 127.0.0.1 clients connect to.
    public let port: Int
    /// The folder holding its configuration, log and pid file.
    public let directory: String
    /// The pool mode it runs in.
    public let poolMode: PoolMode
    /// How many server connections it keeps per database and user.
    public let poolSize: Int
    /// The server it pools.
    public let server: TemporaryPostgres
    private let state = Locked<(pid: Int32?, guardian: Process?, deleted: Bool)>((nil, nil, false))

    /// A libpq connection string to the server's database through PgBouncer. It needs no
    /// password: PgBouncer accepts any client (`auth_type = any`) and logs in to the server itself.
    public var connectionString: String {
        "host=127.0.0.1 port=\(port) dbname=\(server.database) user=\(server.user)"
    }

    private init(server: TemporaryPostgres, poolMode: PoolMode, poolSize: Int, port: Int, directory: String) {
        self.server = server
        self.poolMode = poolMode
        self.poolSize = poolSize
        self.port = port
        self.directory = directory
    }

    /// Starts PgBouncer in front of `server`.
    ///
    /// - Parameters:
    ///   - server: The PostgreSQL server to pool.
    ///   - poolMode: When server connections go back to PgBouncer's pool.
    ///   - poolSize: Server connections per database and user (`default_pool_size`).
    /// - Throws: ``TemporaryServerError`` saying what is missing or what failed, with the end of
    ///   its log.
    public static func start(
        in server: TemporaryPostgres,
        poolMode: PoolMode = .transaction,
        poolSize: Int = 4
    ) async throws -> TemporaryPgBouncer {
        try await ServerSupport.pool.run {
            guard let binary = ServerSupport.findExecutable("pgbouncer", extraDirectories: ["/usr/sbin"]) else {
                throw TemporaryServerError(
                    "'pgbouncer' was not found in PATH or /usr/sbin. Install it: apt-get install pgbouncer (Debian/Ubuntu)."
                )
            }
            let bouncer = TemporaryPgBouncer(
                server: server,
                poolMode: poolMode,
                poolSize: poolSize,
                port: try ServerSupport.freePort(),
                directory: try ServerSupport.makeTemporaryDirectory(prefix: "syncbridge-pgbouncer")
            )
            do {
                try bouncer.launch(binary)
            } catch {
                bouncer.stopBlocking()
                throw error
            }
            ServerSupport.logger.info(
                "started a throwaway PgBouncer",
                metadata: ["port": "\(bouncer.port)", "pool_mode": "\(poolMode.rawValue)", "pool_size": "\(poolSize)"]
            )
            return bouncer
        }
    }

    /// Stops PgBouncer and deletes its folder, also when the calling task is cancelled.
    public func stop() async {
        await ServerSupport.runToCompletion { self.stopBlocking() }
    }

    private var logPath: String { "\(directory)/pgbouncer.log" }

    private func launch(_ binary: String) throws {
        let configuration = """
            [databases]
            \(server.database) = host=127.0.0.1 port=\(server.port) dbname=\(server.database) \
            user=\(server.user) password=\(server.password)

            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = \(port)
            unix_socket_dir =
            auth_type = any
            pool_mode = \(poolMode.rawValue)
            default_pool_size = \(poolSize)
            max_client_conn = 2000
            pidfile = \(directory)/pgbouncer.pid
            """
        let path = "\(directory)/pgbouncer.ini"
        guard FileManager.default.createFile(atPath: path, contents: Data(configuration.utf8)) else {
            throw TemporaryServerError("could not write \(path)")
        }
        // Its configuration holds the server's password: readable by the user it runs as only.
        chmod(path, 0o600)
        try ServerSupport.chown(directory, to: "postgres")
        let process = try ServerSupport.spawn(
            [binary, path],
            asUser: ServerSupport.isRoot ? "postgres" : nil,
            logPath: logPath
        )
        state.withLock { $0.pid = process.processIdentifier }
        let guardian = try ServerSupport.startGuardian(
            serverPID: process.processIdentifier,
            signal: "TERM",
            directory: directory
        )
        state.withLock { $0.guardian = guardian }
        let listening = ServerSupport.waitFor(seconds: 15) {
            !process.isRunning || Self.acceptsConnections(port: port)
        }
        guard listening, process.isRunning else {
            throw TemporaryServerError("PgBouncer did not start:\n\(ServerSupport.tail(logPath))")
        }
        SharedServerCleanup.add { [self] in stopBlocking() }
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    private static func acceptsConnections(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    private func stopBlocking() {
        let (pid, guardian, alreadyDeleted) = state.withLock { state in
            defer {
                state.pid = nil
                state.guardian = nil
                state.deleted = true
            }
            return (state.pid, state.guardian, state.deleted)
        }
        guard !alreadyDeleted else { return }
        // SIGTERM: an immediate shutdown (SIGINT would wait for every client to leave).
        if let pid, !ServerSupport.stopProcess(pid, signal: SIGTERM, seconds: 10) {
            _ = ServerSupport.stopProcess(pid, signal: SIGKILL, seconds: 5)
        }
        guardian?.terminate()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
