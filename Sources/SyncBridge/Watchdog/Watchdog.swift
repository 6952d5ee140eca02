import CSyncBridgeShims
import FoundationEssentials
public import Logging
public import Metrics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Watches Swift's cooperative pool for synchronous code that blocks it, and reports what it sees
/// with the stacks of the blocked threads.
///
/// The watchdog runs on its own dedicated thread, never a cooperative one. Every few milliseconds
/// it sends a tiny probe task to each band (QoS) of the global executor; a band whose probe has
/// not run after ``Configuration/threshold`` is stalled: all its threads are busy or blocked. The
/// watchdog then samples the stacks of that band's threads while they are still blocked, and
/// reports. When the band recovers, a second report gives the total duration.
///
/// ```swift
/// let watchdog = Watchdog(configuration: .init(threshold: .milliseconds(100)), logger: logger)
/// // As a service…
/// let group = ServiceGroup(services: [watchdog, server], logger: logger)
/// // …or explicitly.
/// watchdog.start()
/// defer { watchdog.stop() }
/// ```
///
/// Reports go to the logger (warnings with structured metadata), to swift-metrics
/// (`syncbridge.watchdog.stalls` and the `syncbridge.watchdog.lag` timer, both with a `band`
/// dimension, and `syncbridge.watchdog.blocking_calls`), to ``Configuration/onReport``, and to a JSON-lines file when
/// ``Configuration/jsonLinesPath`` is set. Blocking calls that ``Blocking`` detects are reported
/// through every running watchdog too.
///
/// Blocking the team has accepted — inside ``Blocking/allowed(_:fileID:line:_:)``, or in a
/// frame of ``Configuration/allowedFrames`` — is counted in `syncbridge.watchdog.allowed` (with
/// its reason) and logged at debug level instead of reported.
///
/// Two kinds of wait are not blocking, and are counted and logged at debug level rather than
/// reported: a band whose threads spent the wait runnable but off the CPU (the kernel's scheduler
/// statistics say so) was starved by an overloaded machine (`syncbridge.watchdog.starvations`);
/// a band whose every thread moved on to another task between two samples was saturated with
/// short jobs, with no single long call (`syncbridge.watchdog.saturations`).
///
/// The lag probe cannot see one blocked thread while another thread of the band is free; the
/// per-job mode of the test support can (see `SyncBridgeTesting`).
///
/// Sampling a stack sends the thread SIGPROF, as sampling profilers do: at most twice per stall
/// (halfway to the threshold, and at it), and only to the threads that may serve the stalled
/// band: libdispatch's worker threads, which it recognises by their names (`…-qos`; a thread
/// started from a cooperative thread inherits that name until it names itself), and every other
/// thread except SyncBridge's own only when no worker turns out to run a cooperative job. A
/// system call it interrupts resumes when it is restartable (`read`, `write`, `recv`…); sleeps
/// and polls return early with `EINTR`, which code that blocks must handle anyway. Set
/// ``Configuration/captureStacks`` to `false` to report without stacks.
///
/// Symbols come from the process itself (`dladdr`, exported symbols only, demangled); each frame
/// keeps its image and offset so that `llvm-symbolizer --obj=IMAGE OFFSET` names the rest.
public final class Watchdog: Sendable {
    /// How the watchdog watches and where it reports.
    public struct Configuration: Sendable {
        /// A band whose probe has waited longer than this is reported. Default 100 ms.
        public var threshold: Duration
        /// How often each band is probed. Default: a fifth of the threshold (20 ms at 100 ms). A
        /// stall is reported about one interval after the threshold at worst: the watchdog wakes
        /// exactly when an outstanding probe reaches the threshold, so the delay is the wait for
        /// the first probe sent after the stall began (up to one interval), then the sampling of
        /// the band's stacks (1–2 ms; up to about 8 ms when every CPU is busy, since each sampled
        /// thread must run to answer). Each probe of an idle band wakes one of its threads, so a
        /// shorter interval costs CPU (see Benchmarks/README.md, which measures both).
        public var probeInterval: Duration
        /// The bands to probe. Default: user-initiated, default and utility. Add `.background`
        /// when your code uses it: the kernel runs that band's threads at a lower priority, so on a
        /// saturated machine its probes can wait past the threshold without any blocking code.
        public var bands: [TaskPriority]
        /// Whether to sample the stacks of a stalled band's threads. Default `true`.
        public var captureStacks: Bool
        /// A file that receives each report as one line of JSON (appended). Default none.
        public var jsonLinesPath: String?
        /// Called with each report, on the watchdog's thread.
        public var onReport: (@Sendable (WatchdogReport) -> Void)?
        /// Per-job mode, for tests: every job of Swift's global executor runs on the watchdog's own
        /// threads and is timed, so that a single job that runs longer than the threshold is
        /// reported even while other cooperative threads are free. Adds a lock and a thread
        /// hand-off to every job (see Benchmarks/README.md). Default `false`.
        public var timesEveryJob: Bool
        /// The threads that run the jobs in per-job mode. Default (`nil` in the initializer): one
        /// per CPU, as each band of the cooperative pool has.
        public var perJobThreads: Int
        /// Blocking the team has accepted, by stack frame: a stall whose every blocked thread has
        /// a frame whose symbol contains one of these texts (`"flushLogs"`, `"fsync"`), or a slow
        /// job (per-job mode) whose stack has one, is counted in `syncbridge.watchdog.allowed` and
        /// logged at debug level instead of reported. Needs ``captureStacks``. For a scope in code, see
        /// ``Blocking/allowed(_:fileID:line:_:)``. Default none.
        public var allowedFrames: [String]
        /// Event loops to watch besides the cooperative pool's bands (see ``WatchdogTarget``;
        /// `SyncBridgeNIO`'s `group.watchdogTargets`). A stalled loop is reported like a band, with
        /// the loop's name (``WatchdogReport/eventLoop``) and its thread's stack; the loops'
        /// threads become event loop threads for ``Blocking`` and the guarded waits (see
        /// ``EventLoopThreads``). More can be added while the watchdog runs: ``watch(_:)``.
        /// Default none.
        public var targets: [any WatchdogTarget]

        /// A configuration; every parameter has the default described on its property.
        public init(
            threshold: Duration = .milliseconds(100),
            probeInterval: Duration? = nil,
            bands: [TaskPriority] = [.userInitiated, .medium, .utility],
            captureStacks: Bool = true,
            jsonLinesPath: String? = nil,
            onReport: (@Sendable (WatchdogReport) -> Void)? = nil,
            timesEveryJob: Bool = false,
            perJobThreads: Int? = nil,
            allowedFrames: [String] = [],
            targets: [any WatchdogTarget] = []
        ) {
            self.allowedFrames = allowedFrames
            self.targets = targets
            self.timesEveryJob = timesEveryJob
            self.perJobThreads = max(1, perJobThreads ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
            self.threshold = threshold
            self.probeInterval = probeInterval ?? max(.milliseconds(1), threshold / 5)
            self.bands = bands
            self.captureStacks = captureStacks
            self.jsonLinesPath = jsonLinesPath
            self.onReport = onReport
        }
    }

    /// The configuration in force.
    public let configuration: Configuration
    /// The scope whose blocking calls this watchdog alone receives, if any.
    let scope: UInt64?
    private let logger: Logger
    private let blockingCallCounter: Counter
    private let metricsFactory: any MetricsFactory
    private let condition = ConditionLock()
    private let state: Locked<State>

    /// A band's key: a cooperative band's priority (0–255), or a watched target's number (from
    /// ``firstTargetKey``).
    private typealias BandKey = Int
    /// The key of the first target; every cooperative band's key is below it.
    private static let firstTargetKey: BandKey = 256

    private struct BandState {
        /// The cooperative pool's band, or `nil` for a target.
        let priority: TaskPriority?
        /// The event loop, or `nil` for a band of the cooperative pool.
        var target: (any WatchdogTarget)?
        /// The band's metrics (for a target, created when its first probe runs: by then it knows
        /// its thread's name).
        var metrics: BandMetrics?
        var sequence: UInt64 = 0
        /// When the outstanding probe was sent (monotonic ns); `nil` when none is outstanding.
        var sentAt: UInt64?
        /// When the latest probe ran, and how long it had waited.
        var acknowledgedAt: UInt64?
        /// Set while the band is reported stalled: when the stall started (monotonic and wall).
        var stallStart: (monotonic: UInt64, wall: Date)?
        /// Set by the probe that ends a stall; the watchdog's thread reports it.
        var stallEnd: UInt64?
        /// The band's threads' scheduler times, read when the outstanding probe had waited half
        /// the threshold (see `isStarved`).
        var schedulerSnapshot: [Int32: SchedulerTimes]?
        /// The task each of the band's threads ran at that time (see `isSaturated`).
        var taskSnapshot: [Int32: UInt] = [:]
        /// The scheduler times of the threads sampled then (see `isPreempted`).
        var sampledTimes: [Int32: SchedulerTimes] = [:]
        /// The outstanding probe's wait is starvation or saturation, not blocking: its end is not
        /// reported either.
        var dismissed = false
    }

    typealias SchedulerTimes = StallClassifier.SchedulerTimes

    /// The metrics of one band, `band` dimension: the cooperative band's name, or `event loop NAME`.
    private struct BandMetrics {
        let stalls: Counter
        let starvations: Counter
        let saturations: Counter
        let lag: Timer

        init(band: String, factory: any MetricsFactory) {
            stalls = Counter(label: "syncbridge.watchdog.stalls", dimensions: [("band", band)], factory: factory)
            starvations = Counter(
                label: "syncbridge.watchdog.starvations",
                dimensions: [("band", band)],
                factory: factory
            )
            saturations = Counter(
                label: "syncbridge.watchdog.saturations",
                dimensions: [("band", band)],
                factory: factory
            )
            lag = Timer(label: "syncbridge.watchdog.lag", dimensions: [("band", band)], factory: factory)
        }
    }

    private struct State {
        var running = false
        var stopRequested = false
        /// Resumed when the watchdog's thread has ended.
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
        var bands: [BandKey: BandState] = [:]
        /// The key the next target gets.
        var nextTargetKey: BandKey = Watchdog.firstTargetKey
        /// Which band each cooperative thread (or target) was last seen serving.
        var bandOfThread: [Int32: BandKey] = [:]
        /// Reports waiting to be delivered on the watchdog's thread.
        var pending: [WatchdogReport] = []
        var watchdogThreadID: Int32 = 0
        /// Per-job mode: the slow jobs reported while running, by sequence, with their start.
        var reportedJobs: [UInt64: Date] = [:]
        /// Jobs seen running past the threshold in an accepted scope: counted, never reported.
        var allowedJobs: Set<UInt64> = []
        var timingJobs = false
    }

    /// Creates a watchdog; call ``start()`` (or run it as a `Service`) to start watching.
    ///
    /// - Parameters:
    ///   - configuration: Threshold, probe interval, bands and report destinations.
    ///   - logger: Receives each report as a warning.
    ///   - metricsFactory: Receives the `syncbridge.watchdog.*` metrics: stalls, starvations and
    ///     saturations per band, the lag timer per band, blocking calls.
    public convenience init(
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "SyncBridge.Watchdog"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.init(configuration: configuration, logger: logger, metricsFactory: metricsFactory, scope: nil)
    }

    /// A watchdog for one scope (a test): blocking calls made in that scope's tasks are reported to
    /// it alone, not to the process's other watchdogs.
    package init(
        configuration: Configuration,
        logger: Logger = Logger(label: "SyncBridge.Watchdog"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        scope: UInt64?
    ) {
        self.scope = scope
        self.configuration = configuration
        self.logger = logger
        self.metricsFactory = metricsFactory
        var bands: [BandKey: BandState] = [:]
        for priority in configuration.bands {
            bands[BandKey(priority.rawValue)] = BandState(
                priority: priority,
                metrics: BandMetrics(band: Self.bandName(priority), factory: metricsFactory)
            )
        }
        blockingCallCounter = Counter(label: "syncbridge.watchdog.blocking_calls", factory: metricsFactory)
        state = Locked(State(bands: bands))
        watch(configuration.targets)
    }

    /// Watches `targets` (event loops) too, from the next probe on; targets already watched are
    /// left as they are.
    public func watch(_ targets: [any WatchdogTarget]) {
        state.withLock { state in
            for target in targets {
                let identity = target.watchdogIdentity
                guard !state.bands.values.contains(where: { $0.target?.watchdogIdentity == identity }) else { continue }
                state.bands[state.nextTargetKey] = BandState(priority: nil, target: target)
                state.nextTargetKey += 1
            }
        }
        condition.withLock { condition.broadcast() }
    }

    /// Stops watching `targets`; a stall of theirs still going on is not reported further.
    public func stopWatching(_ targets: [any WatchdogTarget]) {
        let identities = Set(targets.map(\.watchdogIdentity))
        state.withLock { state in
            state.bands = state.bands.filter { _, band in
                band.target.map { !identities.contains($0.watchdogIdentity) } ?? true
            }
        }
    }

    /// The names the metrics and reports give a band.
    private static func names(of band: BandState) -> (dimension: String, band: String?, eventLoop: String?) {
        if let priority = band.priority {
            let name = bandName(priority)
            return (name, name, nil)
        }
        let loop = band.target?.watchdogName ?? "?"
        return ("event loop \(loop)", nil, loop)
    }

    /// The metrics of the band `key`, created if they are not yet.
    private func metrics(of key: BandKey) -> BandMetrics? {
        guard let band = state.withLock({ $0.bands[key] }) else { return nil }
        if let metrics = band.metrics { return metrics }
        let metrics = BandMetrics(band: Self.names(of: band).dimension, factory: metricsFactory)
        state.withLock { $0.bands[key]?.metrics = metrics }
        return metrics
    }

    /// The name of a band: `userInitiated`, `default`, `utility`, `background`, or the raw value.
    public static func bandName(_ priority: TaskPriority) -> String {
        switch priority {
        case .userInitiated: "userInitiated"
        case .medium: "default"
        case .utility: "utility"
        case .background: "background"
        default: "priority \(priority.rawValue)"
        }
    }

    /// Starts the watchdog's thread. Does nothing when it already runs.
    public func start() {
        let shouldStart = state.withLock { state -> Bool in
            guard !state.running else { return false }
            state.running = true
            state.stopRequested = false
            return true
        }
        guard shouldStart else { return }
        if configuration.captureStacks { _ = StackSampler.install() }
        if configuration.timesEveryJob {
            let installed = InstrumentedGlobalExecutor.acquire(
                threadCount: configuration.perJobThreads,
                slowThreshold: configuration.threshold
            )
            if installed {
                state.withLock { $0.timingJobs = true }
            } else {
                logger.error("watchdog: this Swift runtime has no swift_task_enqueueGlobal_hook; per-job timing is off")
            }
        }
        startDedicatedThread(named: "sb-watchdog") { [self] in watch() }
        WatchdogRegistry.add(self)
        logger.debug(
            "watchdog started",
            metadata: ["threshold": "\(WatchdogReport.milliseconds(configuration.threshold))"]
        )
    }

    /// Stops the watchdog and waits for its thread to end; reports still pending are delivered
    /// first. Does nothing when it is not running. Blocks for about one probe interval: from async
    /// code, use ``shutdown()``.
    ///
    /// - Parameters:
    ///   - fileID: The call site, for the blocking-call report; leave the default.
    ///   - line: The call site, for the blocking-call report; leave the default.
    @available(*, noasync, message: "blocks the calling thread", renamed: "shutdown()")
    public func stop(fileID: StaticString = #fileID, line: UInt = #line) {
        try? Blocking.check("Watchdog.stop", policy: .log, callSite: CallSite(fileID: fileID, line: line))
        guard requestStop() else { return }
        condition.lock()
        while state.withLock({ $0.running }) { condition.wait() }
        condition.unlock()
    }

    /// Stops the watchdog and suspends until its thread has ended; reports still pending are
    /// delivered first.
    public func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let running = state.withLock { state -> Bool in
                guard state.running else { return false }
                state.stopWaiters.append(continuation)
                return true
            }
            if running { _ = requestStop() } else { continuation.resume() }
        }
    }

    /// Asks the thread to stop; `false` when it is not running.
    private func requestStop() -> Bool {
        WatchdogRegistry.remove(self)
        let running = state.withLock { state -> Bool in
            guard state.running else { return false }
            state.stopRequested = true
            return true
        }
        if running { condition.withLock { condition.broadcast() } }
        return running
    }

    /// Whether a probe has run on band `priority` since the watchdog started.
    func hasProbed(_ priority: TaskPriority) -> Bool {
        state.withLock { $0.bands[BandKey(priority.rawValue)]?.acknowledgedAt != nil }
    }

    /// Whether the watchdog's thread is running.
    public var isRunning: Bool {
        state.withLock { $0.running }
    }

    /// The watchdog's view of each band it probes, for ``SyncBridgeSnapshot``.
    func snapshot(now: UInt64) -> SyncBridgeSnapshot.WatchdogView {
        // The pool's bands in the configuration's order, then the loops in the order they came.
        let bands = state.withLock { state in
            configuration.bands.compactMap { state.bands[BandKey($0.rawValue)] }
                + state.bands.filter { $0.key >= Self.firstTargetKey }.sorted { $0.key < $1.key }.map(\.value)
        }
        return SyncBridgeSnapshot.WatchdogView(
            thresholdSeconds: Double(Self.nanoseconds(configuration.threshold)) / 1e9,
            bands: bands.map { band in
                SyncBridgeSnapshot.Band(
                    name: Self.names(of: band).dimension,
                    probeWaitingForSeconds: band.sentAt.map { SyncBridgeSnapshot.seconds(from: $0, to: now) },
                    lastProbeSecondsAgo: band.acknowledgedAt.map { SyncBridgeSnapshot.seconds(from: $0, to: now) },
                    stalledForSeconds: band.stallStart.map { SyncBridgeSnapshot.seconds(from: $0.monotonic, to: now) }
                )
            }
        )
    }

    // MARK: The watchdog's thread

    private func watch() {
        state.withLock { $0.watchdogThreadID = sb_gettid() }
        // The first symbolization loads symbol tables and the demangler: pay for it now rather
        // than in the first report.
        if configuration.captureStacks { _ = StackSampler.currentStack() }
        let interval = Self.nanoseconds(configuration.probeInterval)
        while true {
            let stop = state.withLock { $0.stopRequested }
            tick()
            if state.withLock({ $0.timingJobs }) { checkJobs() }
            deliverPending()
            if stop { break }
            // Wake at the next interval, or earlier when an outstanding probe reaches half the
            // threshold (the starvation/saturation snapshot) or the threshold itself.
            let deadline = min(monotonicNanoseconds() + interval, nextProbeDeadline())
            condition.lock()
            _ = condition.wait(untilMonotonicNanoseconds: deadline)
            condition.unlock()
        }
        if state.withLock({ $0.timingJobs }) {
            InstrumentedGlobalExecutor.release(slowThreshold: configuration.threshold)
            checkJobs()
            deliverPending()
        }
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.running = false
            state.timingJobs = false
            defer { state.stopWaiters.removeAll() }
            return state.stopWaiters
        }
        condition.withLock { condition.broadcast() }
        for waiter in waiters { waiter.resume() }
        logger.debug("watchdog stopped")
    }

    /// The earliest moment an outstanding probe needs a look: half the threshold after it was sent
    /// (for the snapshot `isStarved` and `isSaturated` compare with), then the threshold.
    private func nextProbeDeadline() -> UInt64 {
        let threshold = Self.nanoseconds(configuration.threshold)
        return state.withLock { state in
            var earliest = UInt64.max
            for band in state.bands.values {
                guard let sentAt = band.sentAt, band.stallStart == nil else { continue }
                let due = band.schedulerSnapshot == nil ? sentAt + threshold / 2 : sentAt + threshold
                earliest = min(earliest, due + 1)
            }
            return earliest
        }
    }

    /// Probes every band, reports stalls that began or ended.
    private func tick() {
        let now = monotonicNanoseconds()
        let threshold = Self.nanoseconds(configuration.threshold)
        var probes: [(BandState, BandKey, UInt64)] = []
        var began: [(BandKey, UInt64, Date)] = []
        var ended: [(BandKey, UInt64, Date)] = []
        var snapshots: [BandKey] = []
        state.withLock { state in
            for (key, var band) in state.bands {
                if let threadID = band.target?.watchdogThreadID, state.bandOfThread[threadID] != key {
                    state.bandOfThread[threadID] = key
                }
                if let end = band.stallEnd, let start = band.stallStart {
                    if !band.dismissed { ended.append((key, end - start.monotonic, start.wall)) }
                    band.stallStart = nil
                    band.stallEnd = nil
                    band.dismissed = false
                }
                if let sentAt = band.sentAt {
                    if band.schedulerSnapshot == nil && now - sentAt > threshold / 2 {
                        snapshots.append(key)
                    }
                    if band.stallStart == nil && now - sentAt > threshold {
                        let wall = Date(timeIntervalSinceNow: -Double(now - sentAt) / 1e9)
                        band.stallStart = (sentAt, wall)
                        began.append((key, now - sentAt, wall))
                    }
                } else {
                    band.schedulerSnapshot = nil
                    band.taskSnapshot = [:]
                    band.sampledTimes = [:]
                    band.sequence += 1
                    band.sentAt = now
                    probes.append((band, key, band.sequence))
                }
                state.bands[key] = band
            }
        }
        for key in snapshots {
            var tasks: [Int32: UInt] = [:]
            if configuration.captureStacks {
                for stack in sampleBand(key) { tasks[stack.threadID] = stack.task }
            }
            // The band's known threads (for `isStarved`), and the threads sampled for it, which
            // may serve other bands (for `isPreempted`).
            let threads = state.withLock { state in state.bandOfThread.filter { $0.value == key }.map(\.key) }
            var snapshot: [Int32: SchedulerTimes] = [:]
            for threadID in threads { snapshot[threadID] = Self.schedulerTimes(of: threadID) }
            var sampledTimes: [Int32: SchedulerTimes] = [:]
            for threadID in tasks.keys {
                sampledTimes[threadID] = snapshot[threadID] ?? Self.schedulerTimes(of: threadID)
            }
            state.withLock { state in
                state.bands[key]?.schedulerSnapshot = snapshot
                state.bands[key]?.sampledTimes = sampledTimes
                state.bands[key]?.taskSnapshot = tasks
            }
        }
        for (band, key, sequence) in probes {
            if let target = band.target {
                target.enqueueWatchdogProbe { [self] in
                    EventLoopThreads.markCurrentThread(named: target.watchdogName)
                    acknowledge(band: key, sequence: sequence, threadID: sb_gettid())
                }
            } else if let priority = band.priority {
                Task.detached(priority: priority) { [self] in
                    acknowledge(band: key, sequence: sequence, threadID: sb_gettid())
                }
            }
            // The probe's wait starts when it was handed over: on a saturated machine the
            // watchdog's own thread can be preempted between the tick and the hand-over, and an
            // idle loop (asleep in epoll_wait) would otherwise be reported for the watchdog's delay.
            let handedOver = monotonicNanoseconds()
            state.withLock { state in
                guard state.bands[key]?.sequence == sequence, state.bands[key]?.sentAt != nil else { return }
                state.bands[key]?.sentAt = handedOver
            }
        }
        for (key, lag, wall) in began {
            // Two kinds of wait are not blocking: they are counted, not reported.
            var stacks: [ThreadStack] = []
            var dismissal: (counter: Counter?, reason: String)?
            if isStarved(band: key) {
                dismissal = (
                    metrics(of: key)?.starvations,
                    "the band's threads waited for a CPU rather than blocking"
                )
            } else {
                stacks = configuration.captureStacks ? sampleBand(key) : []
                switch classify(band: key, stacks: stacks) {
                case .blocked:
                    if let reason = allowedReason(stacks) {
                        dismissal = (allowedCounter(kind: "stall", reason: reason), "allowed: \(reason)")
                    }
                case .starved(let reason): dismissal = (metrics(of: key)?.starvations, reason)
                case .saturated:
                    dismissal = (
                        metrics(of: key)?.saturations,
                        "the band's threads kept running different tasks: a saturated pool, no single long call"
                    )
                }
            }
            guard let band = state.withLock({ $0.bands[key] }) else { continue }
            let names = Self.names(of: band)
            if let dismissal {
                state.withLock { $0.bands[key]?.dismissed = true }
                dismissal.counter?.increment()
                logger.debug(
                    "watchdog: \(dismissal.reason); not reported",
                    metadata: [
                        "watchdog.band": "\(names.dimension)",
                        "watchdog.lag_ms": "\(lag / 1_000_000)",
                    ]
                )
                continue
            }
            let report = WatchdogReport(
                kind: .stall,
                band: names.band,
                eventLoop: names.eventLoop,
                startedAt: wall,
                duration: .nanoseconds(Int64(lag)),
                isOngoing: true,
                threshold: configuration.threshold,
                stacks: stacks
            )
            if enqueue(report) { metrics(of: key)?.stalls.increment() }
        }
        for (key, duration, wall) in ended {
            guard let band = state.withLock({ $0.bands[key] }) else { continue }
            let names = Self.names(of: band)
            enqueue(
                WatchdogReport(
                    kind: .stall,
                    band: names.band,
                    eventLoop: names.eventLoop,
                    startedAt: wall,
                    duration: .nanoseconds(Int64(duration)),
                    isOngoing: false,
                    threshold: configuration.threshold
                )
            )
        }
    }

    /// Per-job mode: reports jobs running past the threshold (with their stack, sampled while they
    /// run) and the end of each.
    private func checkJobs() {
        let now = monotonicNanoseconds()
        let threshold = Self.nanoseconds(configuration.threshold)
        let reported = state.withLock { $0.reportedJobs }
        // Jobs may start after `now` was read: subtract with saturation.
        func age(_ start: UInt64) -> UInt64 { now > start ? now - start : 0 }
        for job in InstrumentedGlobalExecutor.running
        where age(job.startedAt) > threshold && reported[job.sequence] == nil {
            let wall = Date(timeIntervalSinceNow: -Double(age(job.startedAt)) / 1e9)
            let stack = configuration.captureStacks ? StackSampler.sample(job.threadID) : nil
            state.withLock { $0.reportedJobs[job.sequence] = wall }
            let frame = stack.flatMap { stack in configuration.allowedFrames.first { stack.contains(symbol: $0) } }
            if let reason = job.allowance?.reason ?? frame.map({ "frame \($0)" }) {
                state.withLock { _ = $0.allowedJobs.insert(job.sequence) }
                countAllowed(
                    kind: "slow_job",
                    reason: reason,
                    what: "a job running for \(age(job.startedAt) / 1_000_000) ms"
                )
                continue
            }
            enqueue(
                WatchdogReport(
                    kind: .slowJob,
                    band: Self.perJobBand,
                    startedAt: wall,
                    duration: .nanoseconds(Int64(age(job.startedAt))),
                    isOngoing: true,
                    threshold: configuration.threshold,
                    stacks: stack.map { [$0] } ?? []
                )
            )
        }
        for job in InstrumentedGlobalExecutor.takeFinishedSlowJobs() where job.endedAt - job.startedAt > threshold {
            let (started, counted) = state.withLock {
                ($0.reportedJobs.removeValue(forKey: job.sequence), $0.allowedJobs.remove(job.sequence) != nil)
            }
            // Counted while it ran; or accepted, and finished before a check saw it.
            if counted { continue }
            if let allowance = job.allowance {
                countAllowed(
                    kind: "slow_job",
                    reason: allowance.reason,
                    what: "a job that ran for \((job.endedAt - job.startedAt) / 1_000_000) ms"
                )
                continue
            }
            enqueue(
                WatchdogReport(
                    kind: .slowJob,
                    band: Self.perJobBand,
                    startedAt: started
                        ?? Date(timeIntervalSinceNow: -Double(monotonicNanoseconds() - job.startedAt) / 1e9),
                    duration: .nanoseconds(Int64(job.endedAt - job.startedAt)),
                    isOngoing: false,
                    threshold: configuration.threshold
                )
            )
        }
    }

    /// The band named in per-job reports: the redirected jobs of every band share one executor.
    static let perJobBand = "all (per-job mode)"

    /// Whether the band's threads spent the stall mostly runnable but off the CPU (see
    /// ``StallClassifier/isStarved(before:after:threshold:)``), from their scheduler times now.
    private func isStarved(band key: BandKey) -> Bool {
        guard let snapshot = state.withLock({ $0.bands[key]?.schedulerSnapshot }) else { return false }
        var now: [Int32: SchedulerTimes] = [:]
        for threadID in snapshot.keys { now[threadID] = Self.schedulerTimes(of: threadID) }
        return StallClassifier.isStarved(
            before: snapshot,
            after: now,
            threshold: Self.nanoseconds(configuration.threshold)
        )
    }

    /// The verdict on a stall (see ``StallClassifier/classify(samples:capturesStacks:tasksHalfway:timesHalfway:timesNow:threshold:)``),
    /// from the stacks sampled at the threshold and the threads' scheduler times now.
    private func classify(band key: BandKey, stacks: [ThreadStack]) -> StallClassifier.Verdict {
        let (tasks, times, isTarget) = state.withLock {
            ($0.bands[key]?.taskSnapshot ?? [:], $0.bands[key]?.sampledTimes ?? [:], $0.bands[key]?.target != nil)
        }
        // A loop runs no Swift task and is never saturated in the pool's sense: one probe queued
        // behind more than a threshold of work is a stall of every connection it serves. A loop
        // whose thread is not known yet (blocked before its first probe ran) cannot be sampled.
        if isTarget && stacks.isEmpty { return .blocked }
        var now: [Int32: SchedulerTimes] = [:]
        for stack in stacks { now[stack.threadID] = Self.schedulerTimes(of: stack.threadID) }
        return StallClassifier.classify(
            samples: stacks.map { StallClassifier.Sample(threadID: $0.threadID, task: $0.task) },
            capturesStacks: configuration.captureStacks,
            tasksHalfway: tasks,
            timesHalfway: times,
            timesNow: now,
            threshold: Self.nanoseconds(configuration.threshold)
        )
    }

    /// A thread's scheduler times, from the kernel (`/proc/…/schedstat`).
    static func schedulerTimes(of threadID: Int32) -> SchedulerTimes? {
        var times = SchedulerTimes(running: 0, waiting: 0)
        return sb_thread_schedstat(threadID, &times.running, &times.waiting) == 0 ? times : nil
    }

    /// Runs in a probe task, on a thread of the band.
    private func acknowledge(band key: BandKey, sequence: UInt64, threadID: Int32) {
        let now = monotonicNanoseconds()
        let acknowledged = state.withLock { state -> (lag: UInt64, band: BandState)? in
            state.bandOfThread[threadID] = key
            guard var band = state.bands[key], band.sequence == sequence, let sentAt = band.sentAt else { return nil }
            band.sentAt = nil
            band.acknowledgedAt = now
            if band.stallStart != nil { band.stallEnd = now }
            state.bands[key] = band
            // The watchdog may record the hand-over after this probe read the clock.
            return (now > sentAt ? now - sentAt : 0, band)
        }
        guard let acknowledged else { return }
        let lag = acknowledged.band.metrics?.lag ?? metrics(of: key)?.lag
        lag?.recordNanoseconds(Int64(acknowledged.lag))
    }

    /// The stacks of the threads serving band `key` that run a job; when none does, those of
    /// every band's threads that do. libdispatch caps the threads of all bands together, so a band
    /// can wait for a thread while other bands' threads run: whether they block or keep switching
    /// tasks (saturation) decides, and the snapshot at half the threshold and the sample at the
    /// threshold must look at the same threads.
    private func sampleBand(_ key: BandKey) -> [ThreadStack] {
        let (isTarget, bandOfThread) = state.withLock { ($0.bands[key]?.target != nil, $0.bandOfThread) }
        if isTarget {
            // A loop's own thread, learnt from its probes; no other thread serves it.
            let threads = bandOfThread.filter { $0.value == key }.map(\.key)
            return StackSampler.sample(threads).compactMap { $0 }
        }
        let stacks = stacksOfBand(key)
        return stacks.isEmpty ? stacksOfBand(key, anyBand: true) : stacks
    }

    /// Samples the threads that may serve band `key` — those that ran its probes, and the worker
    /// threads of libdispatch's root queues whose band is not known yet — and keeps the
    /// cooperative ones; with `anyBand`, those of every band. Which root queue's thread runs a
    /// band's job is up to libdispatch (an escalated task runs on a higher queue's thread), so a
    /// worker's queue name is not trusted; only that it is a worker (`…-qos` on Linux, not
    /// `….overcommit`, which the cooperative pool does not use). The threads are sampled together,
    /// each interrupted once; when none turns out cooperative, every thread except SyncBridge's
    /// own `sb-` threads is, in case this libdispatch names its workers otherwise.
    private func stacksOfBand(_ key: BandKey, anyBand: Bool = false) -> [ThreadStack] {
        let (bandOfThread, own) = state.withLock { ($0.bandOfThread, $0.watchdogThreadID) }
        var workers: [Int32] = []
        var others: [Int32] = []
        for threadID in StackSampler.threadIDs() where threadID != own {
            if let band = bandOfThread[threadID] {
                // Loops' threads serve no band of the pool.
                if band < Self.firstTargetKey && (anyBand || band == key) { workers.append(threadID) }
                continue
            }
            let name = StackSampler.threadName(threadID)
            if name.hasSuffix("-qos") {
                workers.append(threadID)
            } else if !name.hasPrefix("sb-") {
                others.append(threadID)
            }
        }
        let stacks = StackSampler.sample(workers, onlyCooperative: true).compactMap { $0 }
        guard stacks.isEmpty else { return stacks }
        return StackSampler.sample(others, onlyCooperative: true).compactMap { $0 }
    }

    // MARK: Accepted blocking

    /// Why the stall whose blocked threads are `stacks` is accepted, if it is: every thread is
    /// inside a ``Blocking/allowed(_:fileID:line:_:)`` scope or has an allowed frame.
    private func allowedReason(_ stacks: [ThreadStack]) -> String? {
        guard !stacks.isEmpty else { return nil }
        var reasons: [String] = []
        for stack in stacks {
            if let allowance = AllowedThreads.allowance(of: stack.threadID) {
                reasons.append(allowance.reason)
            } else if let frame = configuration.allowedFrames.first(where: { stack.contains(symbol: $0) }) {
                reasons.append("frame \(frame)")
            } else {
                return nil
            }
        }
        return reasons.first
    }

    private func allowedCounter(kind: String, reason: String) -> Counter {
        Counter(
            label: "syncbridge.watchdog.allowed",
            dimensions: [("kind", kind), ("reason", reason)],
            factory: metricsFactory
        )
    }

    /// Counts accepted blocking (`kind` `blocking_call` or `stall`) instead of reporting it.
    func countAllowed(kind: String, reason: String, what: String) {
        allowedCounter(kind: kind, reason: reason).increment()
        logger.debug("watchdog: \(what) allowed: \(reason)", metadata: ["watchdog.kind": "\(kind)"])
    }

    // MARK: Delivering reports

    /// Queues a report for delivery on the watchdog's thread; `false` when it is dropped: a stall
    /// or slow job that another scope claimed (see `WatchdogScope.claimingStalls(_:_:)`).
    @discardableResult
    func enqueue(_ report: WatchdogReport) -> Bool {
        guard !WatchdogScope.isClaimed(report, byOtherThan: scope, probeInterval: configuration.probeInterval) else {
            return false
        }
        if report.kind == .blockingCall { blockingCallCounter.increment() }
        state.withLock { $0.pending.append(report) }
        condition.withLock { condition.broadcast() }
        return true
    }

    private func deliverPending() {
        let reports = state.withLock { state -> [WatchdogReport] in
            defer { state.pending.removeAll() }
            return state.pending
        }
        for report in reports { deliver(report) }
    }

    private func deliver(_ report: WatchdogReport) {
        var metadata: Logger.Metadata = [
            "watchdog.kind": "\(report.kind.rawValue)",
            "watchdog.duration_ms": "\(report.duration.millisecondCount)",
            "watchdog.ongoing": "\(report.isOngoing)",
        ]
        if let band = report.band { metadata["watchdog.band"] = "\(band)" }
        if let callSite = report.callSite { metadata["watchdog.call_site"] = "\(callSite)" }
        logger.warning("\(report.description)", metadata: metadata)
        configuration.onReport?(report)
        if let path = configuration.jsonLinesPath { appendJSONLine(report, to: path, logger: logger) }
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        UInt64(max(0, duration.nanosecondCount))
    }
}

/// The watchdogs running in this process, which blocking-call reports go to.
enum WatchdogRegistry {
    private static let running = Locked<[Watchdog]>([])

    static func add(_ watchdog: Watchdog) {
        running.withLock { $0.append(watchdog) }
    }

    static func remove(_ watchdog: Watchdog) {
        running.withLock { $0.removeAll { $0 === watchdog } }
    }

    static var all: [Watchdog] {
        running.current
    }
}
