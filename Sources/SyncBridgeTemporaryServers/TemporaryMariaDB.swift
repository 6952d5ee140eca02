import Foundation
import Logging
import SyncBridge

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A real, throwaway MariaDB server for tests and demos: its own data directory in a temporary
/// folder, a unix socket there and a free loopback port, a database and a user with a password.
/// ``stop()`` stops it and deletes everything; so does the end of the process, even a crash.
///
/// ```swift
/// let server = try await TemporaryMariaDB.shared()   // one per test process
/// mysql_real_connect(mysql, server.host, server.user, server.password, server.database,
///                    UInt32(server.port), nil, 0)
/// ```
///
/// Works as root and as a normal user. Finds `mariadbd` in PATH or `/usr/sbin` (where the
/// `mariadb-server` package installs it) and `mariadb-install-db` and the `mariadb` client in
/// PATH; when they are missing the error says which package to install. Every server program runs
/// with `--no-defaults`, so no `my.cnf` on the machine changes it.
public final class TemporaryMariaDB: Sendable, ThrowawayServer {
    /// The database's name.
    public let database = "syncbridge"
    /// The user tests connect as (all privileges, from `localhost` and `127.0.0.1`).
    public let user = "syncbridge"
    /// The user's password.
    public let password: String
    /// The TCP host.
    public let host = "127.0.0.1"
    /// The TCP port on 127.0.0.1.
    public let port: Int
    /// The folder holding the socket, the data directory and the logs.
    public let directory: String

    private let binaries: Binaries
    private let state: Locked<ServerState>

    struct Binaries: Sendable {
        let server: String
        let installDB: String
        let client: String
    }

    private struct ServerState: Sendable {
        var serverPID: Int32?
        var guardianPID: Int32?
        var isDeleted = false
    }

    /// The unix socket's path.
    public var socketPath: String { "\(directory)/mariadb.sock" }

    /// A `mariadb://` URL over TCP with the password.
    public var url: String {
        "mariadb://\(user):\(password)@\(host):\(port)/\(database)"
    }

    private var dataDirectory: String { "\(directory)/data" }
    private var logPath: String { "\(directory)/server.log" }

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
    public static func start() async throws -> TemporaryMariaDB {
        try await startServer()
    }

    /// Starts a new server that also accepts TLS, with `certificates`' server certificate.
    /// Stop it with ``stop()``.
    ///
    /// - Throws: ``TemporaryServerError`` saying what is missing or what failed, with the end of
    ///   the server's log.
    public static func start(tls certificates: TemporaryCertificates) async throws -> TemporaryMariaDB {
        try await startServer(tls: certificates)
    }

    /// The certificates the server serves, for a server started with ``start(tls:)``.
    public let tls: TemporaryCertificates?

    /// The server shared by every test of this process that asks for it; started on first use,
    /// stopped and deleted when the process exits.
    public static func shared() async throws -> TemporaryMariaDB {
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

    var mainProcessID: Int32? { state.withLock { $0.serverPID } }

    static let displayName = "MariaDB"
    static let directoryPrefix = "syncbridge-mariadb"
    static let sharedServer = Locked<Task<TemporaryMariaDB, any Error>?>(nil)

    func setUp() throws {
        try initialize()
        try launch()
        try createDatabaseAndUser()
    }

    /// Kills the server (`SIGKILL`, like a crash) and starts it again on the same port and data,
    /// as fault-injection tests need. Connections that were open are broken.
    public func restart() async throws {
        try await ServerSupport.pool.run {
            self.stopServerOnly(signal: SIGKILL)
            try self.launch()
        }
    }

    /// Stops the server the hard way, as a crash does, and leaves it down until ``relaunch()``:
    /// connections break, new ones are refused until ``relaunch()``. For fault-injection tests.
    public func crash() async throws {
        try await ServerSupport.pool.run {
            self.stopServerOnly(signal: SIGKILL)
        }
    }

    /// Starts a server that ``crash()`` stopped again, on the same port and data.
    public func relaunch() async throws {
        try await ServerSupport.pool.run {
            try self.launch()
        }
    }

    // MARK: Steps (blocking; run on ServerSupport.pool)

    static func findBinaries() throws -> Binaries {
        let sbin = ["/usr/sbin", "/usr/local/sbin", "/usr/bin"]
        func find(_ names: [String], package: String) throws -> String {
            for name in names {
                if let path = ServerSupport.findExecutable(name, extraDirectories: sbin) { return path }
            }
            throw TemporaryServerError(
                "MariaDB's '\(names[0])' was not found in PATH or /usr/sbin. "
                    + "Install it: apt-get install \(package) (Debian/Ubuntu)."
            )
        }
        return Binaries(
            server: try find(["mariadbd", "mysqld"], package: "mariadb-server"),
            installDB: try find(["mariadb-install-db", "mysql_install_db"], package: "mariadb-server"),
            client: try find(["mariadb", "mysql"], package: "mariadb-client")
        )
    }

    /// A small redo log keeps the template (copied for every server) small; the default is 96 MB.
    private static let redoLogSize = "--innodb-log-file-size=8M"

    private var userArguments: [String] {
        ServerSupport.isRoot ? ["--user=root"] : []
    }

    private func initialize() throws {
        let version = ServerSupport.versionNumber(
            in: try ServerSupport.run([binaries.server, "--no-defaults", "--version"], what: "mariadbd --version")
        )
        let template = try ServerSupport.cachedTemplate(key: "mariadb-\(version)", owner: nil) { folder in
            try ServerSupport.run(
                [binaries.installDB, "--no-defaults"] + userArguments + [
                    "--datadir=\(folder)/data", "--auth-root-authentication-method=normal", "--skip-test-db",
                    Self.redoLogSize,
                ],
                what: "mariadb-install-db"
            )
        }
        try ServerSupport.copyDirectory("\(template)/data", to: dataDirectory)
    }

    private func launch() throws {
        try? FileManager.default.removeItem(atPath: logPath)
        var tlsArguments: [String] = []
        if let tls {
            let (certificate, key) = try tls.install(in: directory, owner: nil)
            tlsArguments = ["--ssl-ca=\(tls.authorityFile)", "--ssl-cert=\(certificate)", "--ssl-key=\(key)"]
        }
        let process = try ServerSupport.spawn(
            [binaries.server, "--no-defaults"] + userArguments + [
                "--datadir=\(dataDirectory)", "--socket=\(socketPath)", "--port=\(port)",
                "--bind-address=127.0.0.1", "--skip-name-resolve", "--pid-file=\(directory)/mariadbd.pid",
                // Temporary tables in the server's own folder, not the /tmp every server shares.
                "--tmpdir=\(directory)",
                "--max-connections=1200", "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2",
                "--skip-log-bin", Self.redoLogSize,
            ] + tlsArguments,
            logPath: logPath
        )
        let pid = process.processIdentifier
        let ready = ServerSupport.waitFor(seconds: 15) {
            guard process.isRunning else { return true }
            guard FileManager.default.fileExists(atPath: socketPath) else { return false }
            return (try? runSQL("SELECT 1", as: "root")) != nil
        }
        guard ready, process.isRunning else {
            process.terminate()
            throw TemporaryServerError("MariaDB did not become ready on port \(port):\n\(ServerSupport.tail(logPath))")
        }
        let guardian = try ServerSupport.startGuardian(serverPID: pid, signal: "TERM", directory: directory)
        state.withLock {
            $0.serverPID = pid
            $0.guardianPID = guardian.processIdentifier
        }
    }

    @discardableResult
    private func runSQL(_ sql: String, as user: String) throws -> String {
        try ServerSupport.run(
            [binaries.client, "--no-defaults", "-u\(user)", "-S", socketPath, "-N", "-e", sql],
            what: "mariadb client"
        )
    }

    private func createDatabaseAndUser() throws {
        let escapedPassword = password.replacingOccurrences(of: "'", with: "''")
        try runSQL(
            """
            CREATE DATABASE \(database) CHARACTER SET utf8mb4;
            CREATE USER '\(user)'@'localhost' IDENTIFIED BY '\(escapedPassword)';
            CREATE USER '\(user)'@'127.0.0.1' IDENTIFIED BY '\(escapedPassword)';
            GRANT ALL PRIVILEGES ON *.* TO '\(user)'@'localhost' WITH GRANT OPTION;
            GRANT ALL PRIVILEGES ON *.* TO '\(user)'@'127.0.0.1' WITH GRANT OPTION;
            """,
            as: "root"
        )
    }

    private func stopServerOnly(signal: Int32) {
        let (pid, guardian) = state.withLock { state in
            defer {
                state.serverPID = nil
                state.guardianPID = nil
            }
            return (state.serverPID, state.guardianPID)
        }
        if let guardian { kill(guardian, SIGKILL) }
        if let pid, !ServerSupport.stopProcess(pid, signal: signal, seconds: 15) {
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
        stopServerOnly(signal: SIGTERM)
        try? FileManager.default.removeItem(atPath: directory)
    }
}
