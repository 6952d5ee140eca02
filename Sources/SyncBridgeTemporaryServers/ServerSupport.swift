import Foundation
import Logging
import SyncBridge

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a throwaway server could not be started.
public struct TemporaryServerError: Error, CustomStringConvertible, Sendable {
    /// What failed, what to do about it, and the end of the server's log when there is one.
    public let message: String

    init(_ message: String) {
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

/// Process plumbing shared by ``TemporaryPostgres`` and ``TemporaryMariaDB``. Every blocking
/// step (spawning, waiting for exit, polling files) runs on `pool`, never on a cooperative thread.
enum ServerSupport {
    static let pool = BlockingPool(name: "sb-tempserver", threadCount: 2)
    static let logger = Logger(label: "SyncBridge.TemporaryServers")

    static var isRoot: Bool { geteuid() == 0 }

    /// Finds `name` in PATH, then in `extraDirectories`.
    static func findExecutable(_ name: String, extraDirectories: [String] = []) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let directories = path.split(separator: ":").map(String.init) + extraDirectories
        for directory in directories {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// A process for `arguments`, run as `user` through `runuser` when this process is root; also
    /// returns the full command line.
    private static func makeProcess(_ arguments: [String], asUser user: String?) -> (Process, [String]) {
        var arguments = arguments
        if let user, isRoot {
            arguments = ["/usr/sbin/runuser", "-u", user, "--"] + arguments
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        // A folder every user may enter: the server's user cannot enter a private working folder
        // (a `mktemp -d` checkout), and psql then prints a warning into the output it returns.
        process.currentDirectoryURL = URL(fileURLWithPath: "/")
        return (process, arguments)
    }

    /// Runs `body` on the pool to its end even when the calling task is cancelled: clean-up that
    /// an interrupted program runs must still happen.
    static func runToCompletion(_ body: @escaping @Sendable () -> Void) async {
        await Task.detached { _ = try? await pool.run { body() } }.value
    }

    /// Runs a command to completion and returns its combined output.
    /// - Throws: ``TemporaryServerError`` naming the command and its output when it fails.
    @discardableResult
    static func run(_ arguments: [String], asUser user: String? = nil, what: String) throws -> String {
        let (process, arguments) = makeProcess(arguments, asUser: user)
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw TemporaryServerError("\(what): could not start \(arguments[0]): \(error)")
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw TemporaryServerError(
                "\(what) failed (exit \(process.terminationStatus)): \(arguments.joined(separator: " "))\n\(text)"
            )
        }
        return text
    }

    /// Starts a long-running server process whose output goes to `logPath`.
    static func spawn(_ arguments: [String], asUser user: String? = nil, logPath: String) throws -> Process {
        let (process, _) = makeProcess(arguments, asUser: user)
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else {
            throw TemporaryServerError("could not create the log file \(logPath)")
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Where servers keep their data: `SYNCBRIDGE_TMPDIR` when set; else `/dev/shm`, a memory
    /// file system on which copying a data directory and running a throwaway server are several
    /// times faster than on disk; else the system's temporary folder.
    static let temporaryFolder: String = {
        let environment = ProcessInfo.processInfo.environment
        var folder: String
        if let configured = environment["SYNCBRIDGE_TMPDIR"], !configured.isEmpty {
            folder = configured
        } else if access("/dev/shm", W_OK | X_OK) == 0 {
            folder = "/dev/shm"
        } else {
            folder = NSTemporaryDirectory()
        }
        while folder.count > 1 && folder.hasSuffix("/") { folder.removeLast() }
        return folder
    }()

    /// A fresh directory under the system's temporary folder.
    static func makeTemporaryDirectory(prefix: String) throws -> String {
        var template = Array("\(temporaryFolder)/\(prefix)-XXXXXX".utf8CString)
        guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TemporaryServerError("could not create a temporary directory: errno \(errno)")
        }
        let path = String(cString: result)
        chmod(path, 0o755)
        return path
    }

    /// A pristine data directory made once per machine, user and server version, then copied for
    /// each new server: initialising one (`initdb`, `mariadb-install-db`) takes 1–2 s, copying it
    /// a few milliseconds.
    ///
    /// Made in a scratch folder and renamed into place, so concurrent test processes never see a
    /// half-made template; the loser of a race deletes its copy.
    ///
    /// - Parameters:
    ///   - key: Names the template; include the server's version.
    ///   - owner: The user that must own it (when running as root).
    ///   - create: Fills the given (existing, empty) folder.
    /// - Returns: The template's path.
    static func cachedTemplate(key: String, owner: String?, create: (String) throws -> Void) throws -> String {
        let root = "\(temporaryFolder)/syncbridge-templates-\(geteuid())"
        mkdir(root, 0o755)
        let template = "\(root)/\(key)"
        let marker = "\(template)/.syncbridge-template-complete"
        if FileManager.default.fileExists(atPath: marker) { return template }
        let scratch = try makeTemporaryDirectory(prefix: "syncbridge-templates-\(geteuid())/\(key).partial")
        if let owner { try chown(scratch, to: owner) }
        do {
            try create(scratch)
            guard FileManager.default.createFile(atPath: "\(scratch)/.syncbridge-template-complete", contents: nil)
            else { throw TemporaryServerError("could not write the template marker in \(scratch)") }
            if rename(scratch, template) != 0 {
                // Another process made it first (or a stale incomplete one is in the way).
                try? FileManager.default.removeItem(atPath: scratch)
                if !FileManager.default.fileExists(atPath: marker) {
                    try? FileManager.default.removeItem(atPath: template)
                    throw TemporaryServerError("could not install the data directory template at \(template)")
                }
            }
        } catch {
            try? FileManager.default.removeItem(atPath: scratch)
            throw error
        }
        return template
    }

    /// The first version number (`15.18`, `10.11.19`) in a program's `--version` output.
    static func versionNumber(in text: String) -> String {
        let tokens = text.split(whereSeparator: { !$0.isNumber && $0 != "." })
        return tokens.first { $0.contains(".") && $0.first!.isNumber }.map(String.init) ?? "unknown"
    }

    /// Copies `source` (a template data directory) to `destination`, keeping owners and modes.
    static func copyDirectory(_ source: String, to destination: String) throws {
        try run(["/bin/cp", "-a", source, destination], what: "copying \(source)")
        try? FileManager.default.removeItem(atPath: "\(destination)/.syncbridge-template-complete")
    }

    /// Gives `path` to `user` (recursively), so a server that refuses root can use it.
    static func chown(_ path: String, to user: String) throws {
        guard isRoot else { return }
        try run(["/bin/chown", "-R", "\(user):", path], what: "chown \(path)")
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TemporaryServerError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw TemporaryServerError("could not find a free port: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Polls `condition` every 10 ms until it holds or `seconds` pass.
    static func waitFor(seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(10_000)
        }
        return try condition()
    }

    /// The last `lines` lines of a log file, for error messages.
    static func tail(_ path: String, lines: Int = 20) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "(no log)" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Starts a guardian shell that stops the server (`signal` to `serverPID`) and deletes
    /// `directory` if this process dies without cleaning up (a crash, a trap, SIGKILL).
    static func startGuardian(serverPID: Int32, signal: String, directory: String) throws -> Process {
        let script = """
            while kill -0 \(getpid()) 2>/dev/null; do sleep 0.5; done
            kill -\(signal) \(serverPID) 2>/dev/null
            for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 \(serverPID) 2>/dev/null || break; sleep 0.5; done
            kill -KILL \(serverPID) 2>/dev/null
            rm -rf '\(directory)'
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Sends `signal` to `pid` and waits up to `seconds` for it to exit.
    static func stopProcess(_ pid: Int32, signal: Int32, seconds: Double) -> Bool {
        guard kill(pid, signal) == 0 else { return true }
        return waitFor(seconds: seconds) { !isAlive(pid) }
    }

    /// Whether `pid` still runs. A child of ours that exited stays a zombie (and answers
    /// `kill(pid, 0)`) until it is reaped, so reap it here.
    /// The processes whose parent is `pid` (read from `/proc/<pid>/stat`).
    static func childProcessIDs(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let child = Int32(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let afterName = stat.range(of: ") ", options: .backwards)
            else { return nil }
            // The fields after the name: state, parent id, …
            let fields = stat[afterName.upperBound...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == pid ? child : nil
        }
    }

    static func isAlive(_ pid: Int32) -> Bool {
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { return false }
        return kill(pid, 0) == 0
    }

    /// A random password of letters and digits.
    static func randomPassword() -> String {
        let alphabet = Array("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        return String((0..<20).map { _ in alphabet.randomElement()! })
    }
}

/// Stops the process-wide shared servers when the test process exits normally.
enum SharedServerCleanup {
    private static let actions = Locked<[@Sendable () -> Void]>([])
    private static let registered = Locked(false)

    static func add(_ action: @escaping @Sendable () -> Void) {
        actions.withLock { $0.append(action) }
        if !registered.withLock({ registered in
            defer { registered = true }
            return registered
        }) {
            atexit {
                let actions = SharedServerCleanup.actions.withLock { actions in
                    defer { actions = [] }
                    return actions
                }
                for action in actions { action() }
            }
        }
    }
}
