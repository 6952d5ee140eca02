public import NIOCore
public import SyncBridge

extension EventLoopGroup {
    /// Every loop of the group as a target a `Watchdog` watches like a band of the cooperative
    /// pool: a loop that runs no task for longer than the threshold — a blocking call in a channel
    /// handler or a future callback, a long computation — is reported with its name and its
    /// thread's stack, sampled while it is still blocked.
    ///
    /// ```swift
    /// // Vapor: app.eventLoopGroup; Hummingbird: the group the application runs on.
    /// let group = MultiThreadedEventLoopGroup.singleton
    /// let watchdog = Watchdog(configuration: .init(threshold: .milliseconds(100), targets: group.watchdogTargets))
    /// // Or: the process-wide watchdog that SYNCBRIDGE_WATCHDOG starts watches the loops too.
    /// Watchdog.environment?.watch(group.watchdogTargets)
    /// ```
    ///
    /// The loops' threads are also marked as event loop threads (``SyncBridge/EventLoopThreads``):
    /// `Blocking.call` reports a blocking call made there and `waitForAsync` refuses to block them.
    /// Stop watching (or stop the watchdog) before the group shuts down: a loop that has shut
    /// down cannot run a probe.
    public var watchdogTargets: [any WatchdogTarget] {
        makeIterator().enumerated().map { index, loop in EventLoopTarget(loop, index: index) }
    }
}

extension EventLoopThreads {
    /// Marks the threads of every loop of `group` as event loop threads: a blocking call there is
    /// reported (``SyncBridge/Blocking``) and a guarded wait refused, as on a cooperative thread.
    /// The marks are set by a task on each loop, shortly after this returns.
    ///
    /// - Parameter group: The group whose loops must never block (Vapor's `app.eventLoopGroup`,
    ///   `MultiThreadedEventLoopGroup.singleton`).
    public static func mark(_ group: any EventLoopGroup) {
        for loop in group.makeIterator() {
            loop.execute { markCurrentThreadAsLoop() }
        }
    }

    /// Marks the calling thread, a loop's, with its own name; returns that name.
    @discardableResult
    static func markCurrentThreadAsLoop() -> String {
        if let name = currentName { return name }
        let thread = ThreadIdentity.current
        let name = thread.name.isEmpty ? "tid \(thread.tid)" : thread.name
        markCurrentThread(named: name)
        return name
    }
}

/// One event loop as a watchdog target: probes run as tasks on the loop, and the loop is named by
/// its thread's name, which a first task on the loop reads.
final class EventLoopTarget: WatchdogTarget {
    private let loop: any EventLoop
    private let thread: Locked<(name: String, id: Int32?)>

    init(_ loop: any EventLoop, index: Int) {
        self.loop = loop
        let thread = Locked<(name: String, id: Int32?)>(("loop #\(index)", nil))
        self.thread = thread
        loop.execute {
            let name = EventLoopThreads.markCurrentThreadAsLoop()
            thread.withLock { $0 = (name, ThreadIdentity.current.tid) }
        }
    }

    var watchdogIdentity: ObjectIdentifier { ObjectIdentifier(loop) }

    var watchdogName: String { thread.current.name }

    var watchdogThreadID: Int32? { thread.current.id }

    func enqueueWatchdogProbe(_ probe: @escaping @Sendable () -> Void) {
        loop.execute(probe)
    }
}
