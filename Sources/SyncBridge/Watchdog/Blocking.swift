import CSyncBridgeShims
import FoundationEssentials
import Logging

/// Detects blocking calls made on Swift's cooperative threads — and on event loop threads (see
/// ``EventLoopThreads``) — whatever their duration, and reports them with their call site, as
/// BlockHound does for the JVM.
///
/// Mark your own blocking functions, and they report when they are called from a task instead of
/// from a ``BlockingPool`` or ``ThreadExecutor`` thread:
///
/// ```swift
/// func legacyFetch(_ id: Int) throws -> Row {
///     try Blocking.call("legacyFetch") { LegacyDB.fetch(id) }   // reported when on the cooperative pool
/// }
/// ```
///
/// SyncBridge's own blocking entry points check the same way: ``waitForAsync(timeout:fileID:line:_:)``
/// (which also refuses to wait there) and ``ThreadExecutor/syncShutdownGracefully(fileID:line:)``.
///
/// Reports go to every running ``Watchdog`` (its logger, metrics, callback and JSON-lines file);
/// when none runs, to a logger labelled `SyncBridge.Blocking`. What happens to the call is the
/// ``Policy``: by default it is logged and goes ahead.
public enum Blocking {
    /// What a blocking call on a cooperative (or event loop) thread does after it is reported.
    public enum Policy: Sendable, Hashable {
        /// Goes ahead (the report is the only effect). The default.
        case log
        /// Throws ``BlockingCallError`` instead of making the call.
        case throwError
        /// Stops the process with the report (for test runs that must never block).
        case trap
    }

    private static let defaultPolicy = Locked(Policy.log)
    private static let fallbackLogger = Logger(label: "SyncBridge.Blocking")

    /// The policy of calls that do not name one. Process-wide; default ``Policy/log``.
    public static var policy: Policy {
        get { defaultPolicy.current }
        set { defaultPolicy.withLock { $0 = newValue } }
    }

    /// Runs `body`, a blocking call, after checking where it runs: on a cooperative thread the
    /// call is reported with its call site and then handled as `policy` says.
    ///
    /// - Parameters:
    ///   - operation: Names the call in the report.
    ///   - policy: What to do on a cooperative thread; ``policy`` when `nil`.
    ///   - fileID: The call site; leave the default.
    ///   - line: The call site; leave the default.
    ///   - body: The blocking work.
    /// - Returns: What `body` returns.
    /// - Throws: ``BlockingCallError`` under ``Policy/throwError`` on a cooperative thread; what
    ///   `body` throws.
    public static func call<Result>(
        _ operation: String = "Blocking.call",
        policy: Policy? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: () throws -> Result
    ) throws -> Result {
        try check(operation, policy: policy, callSite: CallSite(fileID: fileID, line: line))
        return try body()
    }

    /// Checks that the calling thread may block: reports and applies `policy` when it is a
    /// cooperative thread or an event loop's; does nothing otherwise (about 10 ns).
    ///
    /// - Throws: ``BlockingCallError`` under ``Policy/throwError`` on a cooperative or event loop
    ///   thread.
    public static func check(_ operation: String, policy: Policy? = nil, callSite: CallSite) throws {
        guard let thread = GuardedThread.current else { return }
        if let allowance {
            countAllowed(operation, at: callSite, allowance)
            return
        }
        let report = report(operation, callSite: callSite, on: thread)
        switch policy ?? Self.policy {
        case .log:
            return
        case .throwError:
            throw BlockingCallError(operation: operation, callSite: callSite, eventLoop: thread.eventLoopName)
        case .trap:
            fatalError(report.description)
        }
    }

    // MARK: Accepted blocking

    /// Runs `body`, blocking the team has accepted — a logging backend's flush, a one-off start-up
    /// read — so that the watchdog counts it instead of reporting it, as BlockHound's
    /// `allowBlockingCallsInside` does: a blocking call (``call(_:policy:fileID:line:_:)``) made
    /// inside goes ahead whatever the policy, a stall of the cooperative pool while every
    /// blocked thread of the band is inside such a scope is not reported, and neither is (in
    /// per-job mode) a slow job that entered one. Both are counted in
    /// `syncbridge.watchdog.allowed` (dimensions `kind`: `blocking_call`, `stall` or `slow_job`,
    /// and `reason`)
    /// and logged at debug level with the reason and the call site; nothing is dropped silently.
    ///
    /// ```swift
    /// let settings = try Blocking.allowed("start-up: read the settings once") {
    ///     try Blocking.call("readSettings") { try Settings(contentsOf: url) }
    /// }
    /// ```
    ///
    /// The scope covers the synchronous code `body` runs on the calling thread; a guarded wait
    /// (`waitForAsync`) inside is still refused on a cooperative thread, since it could hang. For
    /// stack frames that are always accepted, see ``Watchdog/Configuration/allowedFrames``.
    ///
    /// - Parameters:
    ///   - reason: Why this blocking is accepted; the metrics' `reason` dimension and the logs
    ///     show it. Use a fixed text per place, not one built from data.
    ///   - fileID: The call site; leave the default.
    ///   - line: The call site; leave the default.
    ///   - body: The accepted blocking code.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    public static func allowed<Result>(
        _ reason: String,
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: () throws -> Result
    ) rethrows -> Result {
        let allowance = Allowance(reason: reason, callSite: CallSite(fileID: fileID, line: line))
        let thread = sb_gettid()
        let outer = AllowedThreads.enter(thread, allowance)
        InstrumentedGlobalExecutor.markAllowed(on: thread, allowance)
        defer { AllowedThreads.leave(thread, restoring: outer) }
        return try $allowance.withValue(allowance) { try body() }
    }

    /// An accepted blocking scope: why, and where it was opened.
    struct Allowance: Sendable {
        let reason: String
        let callSite: CallSite
    }

    /// The innermost ``allowed(_:fileID:line:_:)`` scope the current code runs in.
    @TaskLocal static var allowance: Allowance?

    /// Counts an accepted blocking call in the watchdogs that would have reported it.
    private static func countAllowed(_ operation: String, at callSite: CallSite, _ allowance: Allowance) {
        let all = WatchdogRegistry.all
        let scoped = WatchdogScope.current.map { scope in all.filter { $0.scope == scope } } ?? []
        let watchdogs = scoped.isEmpty ? all : scoped
        if watchdogs.isEmpty {
            fallbackLogger.debug(
                "blocking call \(operation) at \(callSite) allowed: \(allowance.reason)",
                metadata: ["watchdog.allowed_at": "\(allowance.callSite)"]
            )
        }
        for watchdog in watchdogs {
            watchdog.countAllowed(
                kind: "blocking_call",
                reason: allowance.reason,
                what: "blocking call \(operation) at \(callSite), in the scope allowed at \(allowance.callSite)"
            )
        }
    }

    /// Reports a blocking call made on a cooperative or event loop thread, with the calling
    /// thread's stack, to every running watchdog (or the fallback logger), and returns the report.
    @discardableResult
    static func report(_ operation: String, callSite: CallSite, on thread: GuardedThread) -> WatchdogReport {
        let report = WatchdogReport(
            kind: .blockingCall,
            eventLoop: thread.eventLoopName,
            startedAt: Date(),
            duration: .zero,
            isOngoing: false,
            threshold: .zero,
            operation: operation,
            callSite: callSite.description,
            stacks: [StackSampler.currentStack()],
            scopeID: WatchdogScope.current
        )
        // A call made in a scope that has its own watchdog (a test's) goes to that one alone.
        let all = WatchdogRegistry.all
        let scoped = report.scopeID.map { scope in all.filter { $0.scope == scope } } ?? []
        let watchdogs = scoped.isEmpty ? all : scoped
        if watchdogs.isEmpty {
            fallbackLogger.warning("\(report.description)", metadata: ["watchdog.call_site": "\(callSite)"])
        }
        for watchdog in watchdogs { watchdog.enqueue(report) }
        return report
    }
}

/// A blocking call was refused because it was made on a cooperative thread or an event loop's
/// (policy ``Blocking/Policy/throwError``).
public struct BlockingCallError: Error, Hashable, CustomStringConvertible {
    /// The call.
    public let operation: String
    /// Where it was made.
    public let callSite: CallSite
    /// The event loop whose thread made the call (see ``EventLoopThreads``); `nil` for a thread
    /// of Swift's cooperative pool.
    public let eventLoop: String?

    /// Creates the error.
    public init(operation: String, callSite: CallSite, eventLoop: String? = nil) {
        self.operation = operation
        self.callSite = callSite
        self.eventLoop = eventLoop
    }

    /// Says what was refused, where, and what to do.
    public var description: String {
        let thread = eventLoop.map { GuardedThread.eventLoop($0) } ?? .cooperative
        return
            "\(operation) at \(callSite) would block \(thread.phrase); run it on a BlockingPool or ThreadExecutor instead"
    }
}

/// The threads inside an accepted blocking scope, and its reason: the watchdog reads them for the
/// threads of a stalled band.
enum AllowedThreads {
    private static let scopes = Locked<[Int32: Blocking.Allowance]>([:])

    /// Records that `thread` entered `allowance`; returns the scope it was in before, if any.
    static func enter(_ thread: Int32, _ allowance: Blocking.Allowance) -> Blocking.Allowance? {
        scopes.withLock { scopes in
            defer { scopes[thread] = allowance }
            return scopes[thread]
        }
    }

    /// Records that `thread` left its innermost scope, back in `outer`.
    static func leave(_ thread: Int32, restoring outer: Blocking.Allowance?) {
        scopes.withLock { $0[thread] = outer }
    }

    /// The scope `thread` is in, if any.
    static func allowance(of thread: Int32) -> Blocking.Allowance? {
        scopes.withLock { $0[thread] }
    }
}
