import CSyncBridgeShims
import FoundationEssentials
public import Logging
public import Metrics
public import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Turns the hangs of sync/async bridging into immediate, explained reports.
///
/// While a detector runs, SyncBridge's waits and locks keep a wait-for graph: who holds which
/// ``AsyncMutex``, pool connection or awaited task, and who waits for which. A wait that closes a
/// cycle is reported at once, with the whole cycle; a ``CheckedMutex``/``AsyncMutex`` pair taken
/// in both orders is reported on the first inversion, before any hang, as Linux's lockdep does; a
/// task that leases a second connection from an exhausted pool it already holds one of is
/// reported at once; a wait that lasts longer than ``Configuration/stuckWaitThreshold`` is
/// reported with the chain of holders behind it. The guarded wait's own refusals (on a cooperative
/// thread, on the thread the awaited work needs, on a starved blocking pool) are reported too.
///
/// ```swift
/// let detector = DeadlockDetector(configuration: .init(mode: .report))
/// detector.start()        // or run it in a ServiceGroup
/// ```
///
/// What a report does depends on the ``Mode``: it is logged (and sent to metrics, the callback and
/// the JSON-lines file) in every mode; in ``Mode/throwError`` the wait that can never end throws
/// ``DeadlockError``; in ``Mode/trap`` the process stops with the report. Set
/// `SYNCBRIDGE_DEADLOCK=report` (or `throw`, `trap`) to run one for a whole process without
/// changing its code.
///
/// With no detector running (or only ones in ``Mode/off``), every hook costs one relaxed atomic
/// load.
public final class DeadlockDetector: Sendable {
    /// What happens when something is detected.
    public enum Mode: Int, Sendable, Hashable, Comparable, CustomStringConvertible {
        /// Nothing is tracked: the detector costs nothing.
        case off
        /// Reports go to the logger, metrics, callback and JSON-lines file; the program goes on
        /// (a deadlocked wait stays blocked, unless it has a timeout).
        case report
        /// As ``report``, and the wait that would never end throws ``DeadlockError`` (it closed
        /// the cycle, or was refused). Lock-order inversions and stuck waits, which are not hangs
        /// yet, are reported only.
        case throwError
        /// As ``report``, then the process stops with the report (for test runs).
        case trap

        /// Orders the modes by strictness.
        public static func < (lhs: Mode, rhs: Mode) -> Bool { lhs.rawValue < rhs.rawValue }

        /// `off`, `report`, `throw` or `trap`.
        public var description: String {
            switch self {
            case .off: "off"
            case .report: "report"
            case .throwError: "throw"
            case .trap: "trap"
            }
        }
    }

    /// How the detector works and where it reports.
    public struct Configuration: Sendable {
        /// What a detection does. Default ``Mode/report``.
        public var mode: Mode
        /// A wait (guarded wait, pool acquire, ``AsyncMutex``, ``GuardedSemaphore``) that lasts
        /// longer than this is reported with its chain, even when no cycle is known. Default 5 s.
        public var stuckWaitThreshold: Duration
        /// A file that receives each report as one line of JSON (appended). Default none.
        public var jsonLinesPath: String?
        /// Called with each report, on the detector's thread.
        public var onReport: (@Sendable (DeadlockReport) -> Void)?

        /// A configuration; every parameter has the default described on its property.
        public init(
            mode: Mode = .report,
            stuckWaitThreshold: Duration = .seconds(5),
            jsonLinesPath: String? = nil,
            onReport: (@Sendable (DeadlockReport) -> Void)? = nil
        ) {
            self.mode = mode
            self.stuckWaitThreshold = stuckWaitThreshold
            self.jsonLinesPath = jsonLinesPath
            self.onReport = onReport
        }
    }

    /// The configuration in force.
    public let configuration: Configuration
    /// The scope whose reports this detector alone receives, if any (a test's).
    let scope: UInt64?
    private let logger: Logger
    private let metricsFactory: any MetricsFactory
    private let condition = ConditionLock()
    private let state = Locked(State())

    private struct State {
        var running = false
        var stopRequested = false
        var pending: [DeadlockReport] = []
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Creates a detector; call ``start()`` (or run it as a `Service`) to start detecting.
    ///
    /// - Parameters:
    ///   - configuration: Mode, stuck-wait threshold and report destinations.
    ///   - logger: Receives each report as a warning (an error in trap mode).
    ///   - metricsFactory: Receives `syncbridge.deadlock.reports`, a counter per pattern.
    public convenience init(
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "SyncBridge.DeadlockDetector"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.init(configuration: configuration, logger: logger, metricsFactory: metricsFactory, scope: nil)
    }

    /// A detector for one scope (a test): what is detected in that scope's tasks is reported to it
    /// alone, not to the process's other detectors.
    package init(
        configuration: Configuration,
        logger: Logger = Logger(label: "SyncBridge.DeadlockDetector"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        scope: UInt64?
    ) {
        self.configuration = configuration
        self.logger = logger
        self.metricsFactory = metricsFactory
        self.scope = scope
    }

    /// Starts tracking and the detector's thread (which finds stuck waits and cycles that formed
    /// without a new wait). Does nothing when it already runs.
    public func start() {
        let shouldStart = state.withLock { state -> Bool in
            guard !state.running else { return false }
            state.running = true
            state.stopRequested = false
            return true
        }
        guard shouldStart else { return }
        startDedicatedThread(named: "sb-deadlock") { [self] in watch() }
        Self.register(self, running: true)
        logger.debug("deadlock detector started", metadata: ["mode": "\(configuration.mode)"])
    }

    /// Stops the detector and suspends until its thread has ended; pending reports are delivered
    /// first. Tracking stops when no other detector runs.
    public func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let running = state.withLock { state -> Bool in
                guard state.running else { return false }
                state.stopWaiters.append(continuation)
                state.stopRequested = true
                return true
            }
            Self.register(self, running: false)
            if running {
                condition.withLock { condition.broadcast() }
            } else {
                continuation.resume()
            }
        }
    }

    /// Whether the detector's thread runs.
    public var isRunning: Bool { state.withLock { $0.running } }

    // MARK: The detector's thread

    private func watch() {
        // Cycles must be found within a second even when they formed without a new wait.
        let interval = min(250_000_000, max(10_000_000, Watchdog.nanoseconds(configuration.stuckWaitThreshold) / 4))
        while true {
            let stop = state.withLock { $0.stopRequested }
            // Every detector scans the whole graph and routes each report to its scope (each wait
            // is reported once, whoever finds it), with the threshold of the detectors it goes to.
            if !stop && WaitGraph.claimScan(interval: interval) {
                for (report, victim) in WaitGraph.unreportedCycles() { Self.handle(report, waits: [victim]) }
                let thresholds = Self.stuckThresholds()
                for report in WaitGraph.stuckWaits(threshold: { scope in thresholds[scope] ?? thresholds[nil] }) {
                    Self.handle(report, waits: [])
                }
            }
            deliverPending()
            if stop { break }
            condition.lock()
            _ = condition.wait(untilMonotonicNanoseconds: monotonicNanoseconds() + interval)
            condition.unlock()
        }
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.running = false
            defer { state.stopWaiters.removeAll() }
            return state.stopWaiters
        }
        for waiter in waiters { waiter.resume() }
        logger.debug("deadlock detector stopped")
    }

    private func enqueue(_ report: DeadlockReport) {
        state.withLock { $0.pending.append(report) }
        condition.withLock { condition.broadcast() }
    }

    private func deliverPending() {
        let reports = state.withLock { state -> [DeadlockReport] in
            defer { state.pending.removeAll() }
            return state.pending
        }
        for report in reports { deliver(report) }
    }

    private func deliver(_ report: DeadlockReport) {
        Counter(
            label: "syncbridge.deadlock.reports",
            dimensions: [("pattern", report.pattern.name)],
            factory: metricsFactory
        ).increment()
        logger.warning(
            "\(report.description)",
            metadata: ["deadlock.pattern": "\(report.pattern)", "deadlock.thrown": "\(report.thrown)"]
        )
        configuration.onReport?(report)
        if let path = configuration.jsonLinesPath { appendJSONLine(report, to: path, logger: logger) }
    }

    // MARK: Routing reports

    private static let registry = Locked<[DeadlockDetector]>([])

    /// Adds or removes `detector` and updates the flags every hook reads, in one critical
    /// section: a start and a shutdown racing each other can never leave tracking off while a
    /// detector runs.
    private static func register(_ detector: DeadlockDetector, running: Bool) {
        registry.withLock { detectors in
            if running {
                detectors.append(detector)
            } else {
                detectors.removeAll { $0 === detector }
            }
            let tracking = detectors.filter { $0.configuration.mode != .off }
            WaitGraph.active.store(!tracking.isEmpty, ordering: .relaxed)
            WaitGraph.scoped.store(tracking.contains { $0.scope != nil }, ordering: .relaxed)
        }
    }

    /// The stuck-wait thresholds by scope (`nil`: the unscoped detectors'), the shortest among the
    /// detectors each scope's reports go to. A scope without a detector of its own uses `nil`'s.
    private static func stuckThresholds() -> [UInt64?: UInt64] {
        registry.withLock { detectors in
            var thresholds: [UInt64?: UInt64] = [:]
            for detector in detectors where detector.configuration.mode != .off {
                let threshold = Watchdog.nanoseconds(detector.configuration.stuckWaitThreshold)
                thresholds[detector.scope] = min(thresholds[detector.scope] ?? .max, threshold)
            }
            return thresholds
        }
    }

    /// The running detectors a report of `scope` goes to: that scope's own, if any; otherwise every
    /// unscoped one.
    private static func recipients(scope: UInt64?) -> [DeadlockDetector] {
        let all = registry.withLock { $0.filter { $0.configuration.mode != .off } }
        if let scope {
            let scoped = all.filter { $0.scope == scope }
            if !scoped.isEmpty { return scoped }
        }
        return all.filter { $0.scope == nil }
    }

    /// The strictest mode among the detectors a report of `scope` goes to; ``Mode/off`` when none
    /// runs.
    package static func mode(forScope scope: UInt64?) -> Mode {
        recipients(scope: scope).map(\.configuration.mode).max() ?? .off
    }

    /// Delivers `report` and applies the mode: in throw mode the `waits` (those that can never
    /// end) are interrupted with ``DeadlockError``; in trap mode the process stops.
    /// - Returns: The mode applied, for callers that refuse by themselves.
    @discardableResult
    static func handle(_ report: DeadlockReport, waits: [WaitGraph.Wait]) -> Mode {
        let recipients = recipients(scope: report.scopeID)
        let mode = recipients.map(\.configuration.mode).max() ?? .off
        guard mode != .off else { return .off }
        var report = report
        let interruptible = waits.filter { $0.interrupt != nil }
        report.thrown = mode == .throwError && !interruptible.isEmpty && report.pattern != .stuckWait
        if mode == .trap {
            for detector in recipients { detector.deliver(report) }
            fatalError("\(report)")
        }
        for detector in recipients { detector.enqueue(report) }
        if report.thrown {
            for wait in interruptible { wait.interrupt?(DeadlockError(report: report)) }
        }
        return mode
    }

    /// Reports what a SyncBridge primitive found by itself (a refused wait, an inversion); returns
    /// the mode applied, so that the primitive throws in throw mode. ``Mode/off`` when no
    /// detector runs.
    @discardableResult
    package static func report(_ report: DeadlockReport, refusing: Bool) -> Mode {
        let recipients = recipients(scope: report.scopeID)
        let mode = recipients.map(\.configuration.mode).max() ?? .off
        guard mode != .off else { return .off }
        var report = report
        report.thrown = refusing && mode == .throwError
        if mode == .trap {
            for detector in recipients { detector.deliver(report) }
            fatalError("\(report)")
        }
        for detector in recipients { detector.enqueue(report) }
        return mode
    }
}

extension DeadlockDetector: Service {
    /// Detects until the task is cancelled or the service group shuts down gracefully, then stops
    /// the detector.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await shutdown()
    }
}

extension DeadlockDetector {
    /// The detector the environment asks for, started the first time SyncBridge starts an
    /// executor: `SYNCBRIDGE_DEADLOCK=report` (or `throw`, `trap`) runs one for the whole process;
    /// `SYNCBRIDGE_DEADLOCK_JSONL` names a file that receives every report as a line of JSON;
    /// `SYNCBRIDGE_DEADLOCK_STUCK_MS` sets the stuck-wait threshold in milliseconds.
    ///
    /// `nil` when `SYNCBRIDGE_DEADLOCK` is not set or is `off`. An invalid value is logged and
    /// ignored.
    public static let environment: DeadlockDetector? = {
        guard let value = getenv("SYNCBRIDGE_DEADLOCK").map({ String(cString: $0) }), !value.isEmpty else { return nil }
        let logger = Logger(label: "SyncBridge.DeadlockDetector")
        let modes: [String: Mode] = ["off": .off, "report": .report, "throw": .throwError, "trap": .trap]
        guard let mode = modes[value] else {
            logger.error(
                "SYNCBRIDGE_DEADLOCK must be off, report, throw or trap; the detector is off",
                metadata: ["value": "\(value)"]
            )
            return nil
        }
        guard mode != .off else { return nil }
        var configuration = Configuration(
            mode: mode,
            jsonLinesPath: getenv("SYNCBRIDGE_DEADLOCK_JSONL").map { String(cString: $0) }
        )
        if let stuck = getenv("SYNCBRIDGE_DEADLOCK_STUCK_MS").map({ String(cString: $0) }) {
            if let milliseconds = Int(stuck), milliseconds > 0 {
                configuration.stuckWaitThreshold = .milliseconds(milliseconds)
            } else {
                logger.error(
                    "SYNCBRIDGE_DEADLOCK_STUCK_MS must be a number of milliseconds; using 5000",
                    metadata: ["value": "\(stuck)"]
                )
            }
        }
        let detector = DeadlockDetector(configuration: configuration, logger: logger)
        detector.start()
        return detector
    }()
}

/// Appends `value` to the file at `path` as one line of JSON.
func appendJSONLine(_ value: some Encodable, to path: String, logger: Logger) {
    do {
        var line = try JSONEncoder().encode(value)
        line.append(UInt8(ascii: "\n"))
        let file = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard file >= 0 else {
            logger.error("cannot open the JSON-lines file", metadata: ["path": "\(path)", "errno": "\(errno)"])
            return
        }
        defer { close(file) }
        _ = line.withUnsafeBytes { write(file, $0.baseAddress, $0.count) }
    } catch {
        logger.error("cannot encode a report", metadata: ["error": "\(error)"])
    }
}
