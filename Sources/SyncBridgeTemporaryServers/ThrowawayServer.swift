import Logging
import SyncBridge

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the throwaway servers share: starting in a fresh folder on a free port (with cleanup when
/// a step fails), one server per process shared by the tests that ask for it, and stopping.
///
/// Each server provides only its own steps: finding its binaries, preparing and launching, and
/// stopping its processes.
protocol ThrowawayServer: AnyObject, Sendable {
    /// Its binaries, found once per start.
    associatedtype Binaries: Sendable

    /// `PostgreSQL`, `MariaDB`: for logs.
    static var displayName: String { get }
    /// The temporary folder's prefix.
    static var directoryPrefix: String { get }
    /// The process's shared server, started on first use.
    static var sharedServer: Locked<Task<Self, any Error>?> { get }

    /// Finds the server's binaries, or says what to install.
    static func findBinaries() throws -> Binaries
    /// A server not started yet; with `tls`, it serves that certificate.
    init(binaries: Binaries, directory: String, port: Int, password: String, tls: TemporaryCertificates?)
    /// Initialises its data, launches it and creates the database and user (blocking).
    func setUp() throws
    /// Stops the server and deletes its folder (blocking); does nothing the second time.
    func stopBlocking()

    var port: Int { get }
    var directory: String { get }
    /// The server's main process, while it runs.
    var mainProcessID: Int32? { get }
}

extension ThrowawayServer {
    /// Starts a new server on ``ServerSupport/pool``; a server whose setup fails is stopped and
    /// its folder deleted before the error is thrown.
    static func startServer(tls: TemporaryCertificates? = nil) async throws -> Self {
        try await ServerSupport.pool.run {
            let started = ContinuousClock.now
            let server = Self(
                binaries: try findBinaries(),
                directory: try ServerSupport.makeTemporaryDirectory(prefix: directoryPrefix),
                port: try ServerSupport.freePort(),
                password: ServerSupport.randomPassword(),
                tls: tls
            )
            do {
                try server.setUp()
            } catch {
                server.stopBlocking()
                throw error
            }
            ServerSupport.logger.info(
                "started a throwaway \(displayName) server",
                metadata: [
                    "port": "\(server.port)", "directory": "\(server.directory)",
                    "startup_ms": "\((ContinuousClock.now - started).millisecondCount)",
                ]
            )
            return server
        }
    }

    /// The process's shared server: started on first use, stopped and deleted when the process
    /// exits.
    static func sharedInstance() async throws -> Self {
        let task = sharedServer.withLock { task in
            if let task { return task }
            let newTask = Task { try await startServer() }
            task = newTask
            return newTask
        }
        let server = try await task.value
        SharedServerCleanup.add { server.stopBlocking() }
        return server
    }

    /// Stops the server and deletes its folder, also when the calling task is cancelled.
    func stopServer() async {
        await ServerSupport.runToCompletion { self.stopBlocking() }
    }
}

extension ThrowawayServer {
    /// The server's processes: the main one and its children (PostgreSQL's backends), while it runs.
    var serverProcessIDs: [Int32] {
        guard let main = mainProcessID else { return [] }
        return [main] + ServerSupport.childProcessIDs(of: main)
    }

    /// Sends `signal` to every process of the server.
    func signalServer(_ signal: Int32) {
        for pid in serverProcessIDs { kill(pid, signal) }
    }
}
