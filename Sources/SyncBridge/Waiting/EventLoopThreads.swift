import CSyncBridgeShims

/// The threads that, like Swift's cooperative threads, must never block: event loops (SwiftNIO's,
/// or any other run loop that serves many connections from one thread).
///
/// ``Blocking`` reports a blocking call made on such a thread, and ``waitForAsync(timeout:fileID:line:_:)``
/// and the other guarded waits refuse to block it, exactly as on a cooperative thread. A thread
/// is marked from itself: `SyncBridgeNIO` marks the loops of the groups it watches or offloads
/// from, a watchdog marks each ``WatchdogTarget`` thread when its first probe runs there, and the
/// database clients' I/O threads (`SQLIOThreads`), which run the tasks that prefer them, mark
/// themselves.
public enum EventLoopThreads {
    /// The name a marked thread carries in reports, held by the thread-local slot.
    private final class Name {
        let value: String
        init(_ value: String) { self.value = value }
    }

    /// Marks the calling thread as an event loop named `name` (reports say "event loop `name`"),
    /// until ``unmarkCurrentThread()``. Call it on the loop's own thread, for example from a task
    /// the loop runs.
    public static func markCurrentThread(named name: String) {
        if let current = currentName, current == name { return }
        let old = sb_guarded_thread()
        sb_set_guarded_thread(Unmanaged.passRetained(Name(name)).toOpaque())
        if let old { Unmanaged<Name>.fromOpaque(old).release() }
    }

    /// Removes the calling thread's mark, if any.
    public static func unmarkCurrentThread() {
        guard let old = sb_guarded_thread() else { return }
        sb_set_guarded_thread(nil)
        Unmanaged<Name>.fromOpaque(old).release()
    }

    /// The name of the event loop the calling thread runs, when it is marked; about 1 ns.
    public static var currentName: String? {
        guard let slot = sb_guarded_thread() else { return nil }
        return Unmanaged<Name>.fromOpaque(slot).takeUnretainedValue().value
    }
}

/// A thread where blocking is reported and synchronous waits are refused.
enum GuardedThread: Equatable {
    /// A thread of Swift's cooperative pool.
    case cooperative
    /// An event loop's thread, by its name.
    case eventLoop(String)

    /// What the calling thread is, if blocking must not happen there.
    static var current: GuardedThread? {
        if let name = EventLoopThreads.currentName { return .eventLoop(name) }
        return CooperativePool.isCurrentThread ? .cooperative : nil
    }

    /// `a thread of Swift's cooperative pool`, `event loop NIO-ELT-0-#1`.
    var phrase: String {
        switch self {
        case .cooperative: "a thread of Swift's cooperative pool"
        case .eventLoop(let name): "event loop \(name)"
        }
    }

    /// The event loop's name; `nil` for a cooperative thread.
    var eventLoopName: String? {
        if case .eventLoop(let name) = self { return name }
        return nil
    }
}
