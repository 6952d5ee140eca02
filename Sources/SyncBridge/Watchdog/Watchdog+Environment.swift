import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Watchdog {
    /// The watchdog that the environment asks for, started the first time SyncBridge starts an
    /// executor: set `SYNCBRIDGE_WATCHDOG` to a threshold in milliseconds (`100`) to watch a
    /// whole process — a staging server, a test run — without changing its code, as Python's
    /// `PYTHONASYNCIODEBUG` does for asyncio. `SYNCBRIDGE_WATCHDOG_JSONL` names a file that
    /// receives every report as a line of JSON; `SYNCBRIDGE_WATCHDOG_PER_JOB=1` times every job.
    ///
    /// `nil` when `SYNCBRIDGE_WATCHDOG` is not set. An invalid value is logged and ignored.
    public static let environment: Watchdog? = {
        guard let value = getenv("SYNCBRIDGE_WATCHDOG").map({ String(cString: $0) }), !value.isEmpty else { return nil }
        let logger = Logger(label: "SyncBridge.Watchdog")
        guard let milliseconds = Int(value), milliseconds > 0 else {
            logger.error(
                "SYNCBRIDGE_WATCHDOG must be a threshold in milliseconds, such as 100; the watchdog is off",
                metadata: ["value": "\(value)"]
            )
            return nil
        }
        let path = getenv("SYNCBRIDGE_WATCHDOG_JSONL").map { String(cString: $0) }
        let perJob = getenv("SYNCBRIDGE_WATCHDOG_PER_JOB").map { String(cString: $0) == "1" } ?? false
        let watchdog = Watchdog(
            configuration: .init(threshold: .milliseconds(milliseconds), jsonLinesPath: path, timesEveryJob: perJob),
            logger: logger
        )
        watchdog.start()
        return watchdog
    }()
}
