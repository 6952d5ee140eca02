import Foundation
import Logging
import SyncBridge

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A real, throwaway PostgreSQL server for tests and demos: its own data directory in a temporary
/// folder, a unix socket there and a free loopback port, a database and a user with a password.
/// ``stop()`` stops it and deletes everything; so does the end of the process, even a crash.
///
/// ```swift
/// let server = try await TemporaryPostgres.shared()   // one per test process
/// let conn = PQconnectdb(server.connectionString)
/// ```
///
/// Works as root (the server runs as the `postgres` user, which the `postgresql` package creates)
/// and as a normal user. Finds `initdb` and `postgres` in PATH, through `pg_config --bindir`, or
/// under `/usr/lib/postgresql/*/bin`; when they are missing the error says which package to
/// install.
public final class TemporaryPostgres: Sendable, ThrowawayServer {
    /// The database's name.
    public let database = "syncbridge"
    /// The user tests connect as (a superuser of this throwaway server).
    public let user = "syncbridge"
    /// The user's password. TCP connections must present it (scram-sha-256).
    public let password: String
    /// The TCP port on 127.0.0.1.
    public let port: Int
    /// The folder holding the unix socket (`.s.PGSQL.<port>`) and the data directory.
    public let directory: String

    private let binaries: Binaries
    private let state: Locked<ServerState>

    struct Binaries: Sendable {
        let initdb: String
        let postgres: String
        let psql: String
    }

    private struct ServerState: Sendable {
        var postmasterPID: Int32?
        var guardianPID: Int32?
        var isDeleted = false
    }

    /// A libpq key/value connection string over TCP with the password.
    public var connectionString: String {
        "host=127.0.0.1 port=\(port) dbname=\(database) user=\(user) password=\(password)"
    }

    /// A `postgres://` URL over TCP with the password.
    public var url: String {
        "postgres://\(user):\(password)@127.0.0.1:\(port)/\(database)"
    }

    /// A libpq connection string over the unix socket (no password needed).
    public var socketConnectionString: String {
        "host=\(directory) port=\(port) dbname=\(database) user=\(user)"
    }

    private var dataDirectory: String { "\(directory)/data" }
    private var logPath: String { "\(directory)/server.log" }
    private static let serverUser = "postgres"

    init(binaries: Binaries, directory: String, port: Int, password: String, tls: TemporaryCertificates?) {
        self.tls = tls
        self.binaries = binaries
        self.directory = directory
        self.port = port
        self.password = password
        self.state = Locked(ServerState())
    }

    /// Starts a new server. Stop it with ``stop()``.
    ///
    /// - Throws: ``TemporaryServerError`` saying what is missing or what failed, with the end of
    ///   the server's log.
    public static func start() async throws -> TemporaryPostgres {
        try await startServer()
    }

    /// Starts a new server that also accepts TLS, with `certificates`' server certificate.
    /// Stop it with ``stop()``.
    ///
    /// - Throws: ``TemporaryServerError`` saying what is missing or what failed, with the end of
    ///   the server's log.
    public static func start(tls certificates: TemporaryCertificates) async throws -> TemporaryPostgres {
        try await startServer(tls: certificates)
    }

    /// The certificates the server serves, for a server started with ``start(tls:)``.
    public let tls: TemporaryCertificates?

    /// The server shared by every test of this process that asks for it; started on first use,
    /// stopped and deleted when the process exits.
    public static func shared() async throws -> TemporaryPostgres {
        try await sharedInstance()
    }

    /// Stops the server and deletes its folder, also when the calling task is cancelled.
    public func stop() async {
        await stopServer()
    }

    /// Freezes the server (`SIGSTOP` to all of its processes), as a host that stopped answering
    /// does: connections stay open, nothing answers. ``thaw()`` resumes it. For fault-injection
    /// tests.
    public func freeze() {
        signalServer(SIGSTOP)
    }

    /// Resumes a server that ``freeze()`` stopped (`SIGCONT`).
    public func thaw() {
        signalServer(SIGCONT)
    }

    /// The server's processes while it runs: the main one first, then its children. For
    /// fault-injection tests.
    public var processIDs: [Int32] { serverProcessIDs }

    var mainProcessID: Int32? { state.withLock { $0.postmasterPID } }

    static let displayName = "PostgreSQL"
    static let directoryPrefix = "syncbridge-pg"
    static let sharedServer = Locked<Task<TemporaryPostgres, any Error>?>(nil)

    func setUp() throws {
        try initialize()
        try launch()
        try setPassword()
    }

    /// Stops the server the hard way (like a crash or power loss: `SIGQUIT`, no checkpoint) and
    /// starts it again on the same port and data, as fault-injection tests need. Connections
    /// that were open are broken.
    public func restart() async throws {
        try await ServerSupport.pool.run {
            try self.stopServerOnly(signal: SIGQUIT)
            try self.launch()
        }
    }

    /// Stops the server the hard way, as a crash does, and leaves it down until ``relaunch()``:
    /// connections break, new ones are refused until ``relaunch()``. For fault-injection tests.
    public func crash() async throws {
        try await ServerSupport.pool.run {
            try self.stopServerOnly(signal: SIGQUIT)
        }
    }

    /// Starts a server that ``crash()`` stopped again, on the same port and data.
    public func relaunch() async throws {
        try await ServerSupport.pool.run {
            try self.launch()
        }
    }

    // MARK: Replication

    /// Starts a streaming standby of this server: a base backup (`pg_basebackup -R`) in a folder
    /// of its own, served on a port of its own, read-only and following this server until
    /// ``promote()``. Same database, user and password. Stop it with ``stop()``.
    ///
    /// - Throws: ``TemporaryServerError`` saying what failed, with the end of its log.
    public func startStandby() async throws -> TemporaryPostgres {
        try await ServerSupport.pool.run { [self] in
            let standby = TemporaryPostgres(
                binaries: binaries,
                directory: try ServerSupport.makeTemporaryDirectory(prefix: Self.directoryPrefix),
                port: try ServerSupport.freePort(),
                password: password,
                tls: nil
            )
            do {
                try ServerSupport.chown(standby.directory, to: Self.serverUser)
                // Beside the server's own binary (PATH may hold only links to some of them).
                let backup = URL(fileURLWithPath: binaries.postgres).resolvingSymlinksInPath()
                    .deletingLastPathComponent().appendingPathComponent("pg_basebackup").path
                // The password goes in a password file, not on a command line (which errors show);
                // the standby keeps using it to follow the primary.
                let passwordFile = "\(standby.directory)/replication.pgpass"
                guard
                    FileManager.default.createFile(
                        atPath: passwordFile,
                        contents: Data("127.0.0.1:\(port):*:\(user):\(password)\n".utf8)
                    )
                else { throw TemporaryServerError("could not write \(passwordFile)") }
                chmod(passwordFile, 0o600)
                try ServerSupport.chown(standby.directory, to: Self.serverUser)
                try ServerSupport.run(
                    [
                        backup, "-d", "host=127.0.0.1 port=\(port) user=\(user) passfile=\(passwordFile)",
                        "-D", standby.dataDirectory, "-R", "-X", "stream", "-c", "fast",
                    ],
                    asUser: Self.serverUser,
                    what: "pg_basebackup from the primary on port \(port)"
                )
                try standby.launch()
            } catch {
                standby.stopBlocking()
                throw error
            }
            ServerSupport.logger.info(
                "started a throwaway PostgreSQL standby",
                metadata: ["port": "\(standby.port)", "primary_port": "\(port)"]
            )
            return standby
        }
    }

    /// Promotes a standby (``startStandby()``) to a primary that accepts writes, and returns once
    /// it does.
    ///
    /// - Throws: ``TemporaryServerError`` when the promotion fails or does not finish within 60 s.
    public func promote() async throws {
        try await ServerSupport.pool.run { [self] in
            let answer = try ServerSupport.run(
                [
                    binaries.psql, "-X", "-q", "-A", "-t", "-h", directory, "-p", "\(port)", "-U", "postgres",
                    "-d", database, "-v", "ON_ERROR_STOP=1", "-c", "SELECT pg_promote(true, 60)",
                ],
                asUser: Self.serverUser,
                what: "promoting the standby on port \(port)"
            )
            // The last line is the function's answer (anything before it is a warning).
            let last = answer.split(separator: "\n").last.map { $0.trimmingCharacters(in: .whitespaces) }
            guard last == "t" else {
                throw TemporaryServerError(
                    "the standby on port \(port) was not promoted within 60 s (pg_promote answered \(answer.debugDescription)):\n\(ServerSupport.tail(logPath))"
                )
            }
        }
    }

    // MARK: Steps (blocking; run on ServerSupport.pool)

    static func findBinaries() throws -> Binaries {
        var directories: [String] = []
        if let pgConfig = ServerSupport.findExecutable("pg_config"),
            let bindir = try? ServerSupport.run([pgConfig, "--bindir"], what: "pg_config --bindir")
        {
            directories.append(bindir.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        directories += versions.sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }.map { "/usr/lib/postgresql/\($0)/bin" }
        func find(_ name: String) throws -> String {
            if let path = ServerSupport.findExecutable(name, extraDirectories: directories) { return path }
            throw TemporaryServerError(
                "PostgreSQL's '\(name)' was not found in PATH, `pg_config --bindir` or /usr/lib/postgresql/*/bin. "
                    + "Install the server: apt-get install postgresql (Debian/Ubuntu)."
            )
        }
        return Binaries(initdb: try find("initdb"), postgres: try find("postgres"), psql: try find("psql"))
    }

    private func initialize() throws {
        try ServerSupport.chown(directory, to: Self.serverUser)
        let version = ServerSupport.versionNumber(
            in: try ServerSupport.run([binaries.postgres, "--version"], what: "postgres --version")
        )
        let owner: String? = ServerSupport.isRoot ? Self.serverUser : nil
        let template = try ServerSupport.cachedTemplate(key: "postgres-\(version)", owner: owner) { folder in
            try Self.makeTemplate(in: "\(folder)/data", binaries: binaries)
        }
        try ServerSupport.copyDirectory("\(template)/data", to: dataDirectory)
    }

    /// A data directory whose `syncbridge` database and role already exist (without a password),
    /// with 1 MB WAL segments to keep it small: copying it is what each new server costs.
    private static func makeTemplate(in dataDirectory: String, binaries: Binaries) throws {
        try ServerSupport.run(
            [
                binaries.initdb, "-D", dataDirectory, "-U", "postgres", "--auth-local=trust",
                "--auth-host=scram-sha-256", "-N", "-E", "UTF8", "--locale=C", "--wal-segsize=1",
            ],
            asUser: serverUser,
            what: "initdb"
        )
        let socketDirectory = try ServerSupport.makeTemporaryDirectory(prefix: "syncbridge-pgsock")
        defer { try? FileManager.default.removeItem(atPath: socketDirectory) }
        try ServerSupport.chown(socketDirectory, to: serverUser)
        let port = try ServerSupport.freePort()
        let pid = try startPostmaster(
            binaries: binaries,
            dataDirectory: dataDirectory,
            port: port,
            socketDirectory: socketDirectory,
            logPath: "\(socketDirectory)/template.log"
        )
        defer {
            _ = ServerSupport.stopProcess(pid, signal: SIGINT, seconds: 15)
            try? FileManager.default.removeItem(atPath: "\(dataDirectory)/postmaster.opts")
        }
        try ServerSupport.run(
            [
                binaries.psql, "-X", "-q", "-h", socketDirectory, "-p", "\(port)", "-U", "postgres",
                "-d", "template1", "-v", "ON_ERROR_STOP=1",
                "-c", "ALTER DATABASE postgres RENAME TO syncbridge",
                "-c", "CREATE ROLE syncbridge LOGIN SUPERUSER",
            ],
            asUser: serverUser,
            what: "preparing the template database"
        )
    }

    /// Starts `postgres` and waits until it accepts connections. Returns the postmaster's pid.
    private static func startPostmaster(
        binaries: Binaries,
        dataDirectory: String,
        port: Int,
        socketDirectory: String,
        logPath: String,
        extraArguments: [String] = []
    ) throws -> Int32 {
        try? FileManager.default.removeItem(atPath: logPath)
        let process = try ServerSupport.spawn(
            [
                binaries.postgres, "-D", dataDirectory, "-p", "\(port)", "-k", socketDirectory,
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=64MB",
            ] + extraArguments,
            asUser: serverUser,
            logPath: logPath
        )
        // The postmaster writes its pid and, once it accepts connections, "ready" into
        // postmaster.pid.
        let pidFile = "\(dataDirectory)/postmaster.pid"
        var postmasterPID: Int32?
        let ready = ServerSupport.waitFor(seconds: 15) {
            guard process.isRunning else { return true }
            guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8) else { return false }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            postmasterPID = lines.first.flatMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
            return lines.count > 7 && lines[7].trimmingCharacters(in: .whitespaces) == "ready"
        }
        guard ready, process.isRunning, let postmasterPID else {
            process.terminate()
            throw TemporaryServerError(
                "PostgreSQL did not become ready on port \(port):\n\(ServerSupport.tail(logPath))"
            )
        }
        return postmasterPID
    }

    private func launch() throws {
        var tlsArguments: [String] = []
        if let tls {
            let (certificate, key) = try tls.install(in: directory, owner: Self.serverUser)
            tlsArguments = ["-c", "ssl=on", "-c", "ssl_cert_file=\(certificate)", "-c", "ssl_key_file=\(key)"]
        }
        let pid = try Self.startPostmaster(
            binaries: binaries,
            dataDirectory: dataDirectory,
            port: port,
            socketDirectory: directory,
            logPath: logPath,
            extraArguments: tlsArguments
        )
        let guardian = try ServerSupport.startGuardian(serverPID: pid, signal: "QUIT", directory: directory)
        state.withLock {
            $0.postmasterPID = pid
            $0.guardianPID = guardian.processIdentifier
        }
    }

    private func setPassword() throws {
        let escapedPassword = password.replacingOccurrences(of: "'", with: "''")
        try ServerSupport.run(
            [
                binaries.psql, "-X", "-q", "-h", directory, "-p", "\(port)", "-U", "postgres", "-d", database,
                // Durable at once: the server runs with synchronous_commit=off, and a crash-like
                // restart() right after start must not lose the password.
                "-v", "ON_ERROR_STOP=1", "-c", "SET synchronous_commit = on",
                "-c", "ALTER ROLE \(user) PASSWORD '\(escapedPassword)'",
            ],
            asUser: Self.serverUser,
            what: "setting the test user's password"
        )
    }

    private func stopServerOnly(signal: Int32) throws {
        let (pid, guardian) = state.withLock { state in
            defer {
                state.postmasterPID = nil
                state.guardianPID = nil
            }
            return (state.postmasterPID, state.guardianPID)
        }
        if let guardian { kill(guardian, SIGKILL) }
        if let pid, !ServerSupport.stopProcess(pid, signal: signal, seconds: 10) {
            kill(pid, SIGKILL)
            _ = ServerSupport.waitFor(seconds: 5) { !ServerSupport.isAlive(pid) }
        }
    }

    func stopBlocking() {
        let alreadyDeleted = state.withLock { state in
            defer { state.isDeleted = true }
            return state.isDeleted
        }
        guard !alreadyDeleted else { return }
        try? stopServerOnly(signal: SIGINT)  // fast shutdown
        try? FileManager.default.removeItem(atPath: directory)
    }
}
