import FoundationEssentials
public import Logging
public import ServiceLifecycle
public import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Dumps a ``SyncBridgeSnapshot`` each time the process receives a signal — `kill -USR1 <pid>`
/// shows what every pool, executor thread, watchdog and the deadlock detector are doing, as
/// `python -m asyncio ps` does for asyncio — to the log or to a JSON file.
///
/// Opt-in: run it as a `Service` of your service group. While it runs the signal is trapped
/// (the default action of `SIGUSR1`, ending the process, no longer applies), and it logs that it
/// is armed.
///
/// ```swift
/// let dumper = SnapshotDumper(destination: .file("/tmp/inventory-snapshot.json"))
/// let group = ServiceGroup(services: [client, dumper, server], logger: logger)
/// ```
public struct SnapshotDumper: Service, Sendable {
    /// Where the snapshots go.
    public struct Destination: Sendable {
        enum Kind {
            case log(Logger, Logger.Level)
            case file(String)
        }

        let kind: Kind

        /// One log record per dump at `level`, the snapshot as one line of JSON in its
        /// `snapshot` metadata.
        public static func log(_ logger: Logger, level: Logger.Level = .notice) -> Destination {
            Destination(kind: .log(logger, level))
        }

        /// A JSON file, replaced at each dump: written beside it and renamed, so that a reader
        /// never sees half of one. Written on a thread of its own, not on the cooperative pool.
        public static func file(_ path: String) -> Destination {
            Destination(kind: .file(path))
        }
    }

    /// The signal that asks for a dump.
    public let signal: UnixSignal
    /// Where the dumps go.
    public let destination: Destination
    private let logger: Logger

    /// Creates a dumper; it traps `signal` once it runs.
    ///
    /// - Parameters:
    ///   - signal: The signal that asks for a dump. Default `SIGUSR1`.
    ///   - destination: The log or a file.
    ///   - logger: Receives the dumper's own events (armed, a file it cannot write).
    public init(
        signal: UnixSignal = .sigusr1,
        destination: Destination,
        logger: Logger = Logger(label: "SyncBridge.SnapshotDumper")
    ) {
        self.signal = signal
        self.destination = destination
        self.logger = logger
    }

    /// Traps the signal and dumps a snapshot each time it arrives, until the task is cancelled or
    /// the service group shuts down.
    public func run() async throws {
        let signals = await UnixSignalsSequence(trapping: signal)
        logger.info(
            "armed: a snapshot of SyncBridge's pools, threads and waits is dumped on each \(signal)",
            metadata: ["pid": "\(getpid())"]
        )
        for await _ in signals.cancelOnGracefulShutdown() {
            await dump()
        }
    }

    /// Takes a snapshot and sends it to the destination now.
    public func dump() async {
        let snapshot = SyncBridgeSnapshot.take()
        switch destination.kind {
        case .log(let target, let level):
            target.log(
                level: level,
                "SyncBridge snapshot",
                metadata: ["snapshot": "\(snapshot.jsonString(prettyPrinted: false))"]
            )
        case .file(let path):
            let json = snapshot.jsonString(prettyPrinted: true)
            let failure = await withCheckedContinuation { (continuation: CheckedContinuation<Int32?, Never>) in
                startDedicatedThread(named: "sb-snapshot") {
                    continuation.resume(returning: Self.replace(path, with: json))
                }
            }
            if let failure {
                logger.error(
                    "cannot write the snapshot file",
                    metadata: ["path": "\(path)", "error": "\(String(cString: strerror(failure)))"]
                )
            }
        }
    }

    /// Writes `text` to a file beside `path` and renames it over `path`; the `errno` of a failure.
    private static func replace(_ path: String, with text: String) -> Int32? {
        let temporary = "\(path).\(getpid()).tmp"
        let file = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard file >= 0 else { return errno }
        var bytes = Array(text.utf8)
        bytes.append(UInt8(ascii: "\n"))
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { write(file, $0.baseAddress! + written, $0.count - written) }
            if result < 0 {
                if errno == EINTR { continue }
                let failure = errno
                close(file)
                unlink(temporary)
                return failure
            }
            written += result
        }
        close(file)
        return rename(temporary, path) == 0 ? nil : errno
    }
}
