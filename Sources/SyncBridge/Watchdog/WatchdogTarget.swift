/// A thread that runs its jobs one after another — an event loop — which a ``Watchdog`` probes as
/// it probes a band of Swift's cooperative pool: a probe that has not run after the threshold
/// means the thread is blocked (or starved of a CPU), and the report names the loop and carries
/// its thread's stack, sampled while it is still blocked.
///
/// `SyncBridgeNIO` makes every loop of a SwiftNIO `EventLoopGroup` a target
/// (`group.watchdogTargets`); conform your own run loop the same way.
public protocol WatchdogTarget: Sendable {
    /// Tells targets apart: a watchdog watches each identity once.
    var watchdogIdentity: ObjectIdentifier { get }
    /// The loop's name in reports (its thread's name, `NIO-ELT-0-#1`, once known).
    var watchdogName: String { get }
    /// The kernel id of the loop's thread once known, so that a loop blocked before its first
    /// probe ran is sampled too. The watchdog also learns it from each probe. Default `nil`.
    var watchdogThreadID: Int32? { get }
    /// Runs `probe` on the loop's thread, after the work queued before it. The watchdog calls it
    /// from its own thread; it must not block.
    func enqueueWatchdogProbe(_ probe: @escaping @Sendable () -> Void)
}

extension WatchdogTarget {
    /// Not known in advance: the watchdog learns the thread from the first probe.
    public var watchdogThreadID: Int32? { nil }
}
