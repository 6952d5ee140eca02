/// A counting semaphore for synchronous code that refuses to block a cooperative thread: the
/// drop-in replacement for the `DispatchSemaphore` that legacy code uses to bridge callers to a
/// shared resource, with the guarded wait's rules.
///
/// `wait` on a thread of Swift's cooperative pool throws ``GuardedWaitError`` at once (and is
/// reported to the watchdog and the ``DeadlockDetector``): there it would stall every task of the
/// band, and deadlock when the signal must come from a task. Elsewhere it blocks like any
/// semaphore; with a detector running, a wait longer than the detector's stuck-wait threshold is
/// reported.
///
/// ```swift
/// let connectionSlot = GuardedSemaphore(value: 1, name: "legacy connection")
/// try connectionSlot.wait()          // throws on a cooperative thread
/// defer { connectionSlot.signal() }
/// ```
public final class GuardedSemaphore: @unchecked Sendable {
    // Safe to share: `value` is read and written with `condition` held.
    private let condition = ConditionLock()
    private var value: Int
    /// The name reports show.
    public let name: String
    private let instance = WaitGraph.newResourceID()

    /// Creates a semaphore with `value` permits.
    ///
    /// - Parameters:
    ///   - value: The initial count (≥ 0).
    ///   - name: Names it in reports; by default the creation site.
    ///   - fileID: The creation site; leave the default.
    ///   - line: The creation site; leave the default.
    public init(value: Int, name: String? = nil, fileID: StaticString = #fileID, line: UInt = #line) {
        precondition(value >= 0, "GuardedSemaphore(value:) needs a count of at least 0, not \(value)")
        self.value = value
        self.name = name ?? "\(fileID):\(line)"
    }

    /// Takes a permit, blocking the calling thread until one is free.
    ///
    /// - Parameters:
    ///   - timeout: Gives up after this long; `nil` waits as long as it takes.
    ///   - fileID: The call site, for errors and reports; leave the default.
    ///   - line: The call site, for errors and reports; leave the default.
    /// - Throws: ``GuardedWaitError`` on a cooperative thread (reason
    ///   ``GuardedWaitError/Reason/cooperativeThread``) and when the timeout passes.
    @available(
        *,
        noasync,
        message: "blocks the calling thread; in async code use an AsyncMutex or a task group's width"
    )
    public func wait(timeout: Duration? = nil, fileID: StaticString = #fileID, line: UInt = #line) throws {
        let callSite = CallSite(fileID: fileID, line: line)
        try refuseOnCooperativeThread("GuardedSemaphore(\(name)).wait", at: callSite)
        let deadline = timeout.map { monotonicNanoseconds() &+ UInt64(max(0, $0.nanosecondCount)) }
        condition.lock()
        defer { condition.unlock() }
        if value > 0 {
            value -= 1
            return
        }
        let waitID =
            WaitGraph.isActive
            ? WaitGraph.beginWait(for: .object(instance), of: self, by: Party.current, at: callSite, ownerless: true)
            : nil
        defer { if let waitID { WaitGraph.endWait(waitID) } }
        while value == 0 {
            if let deadline {
                if !condition.wait(untilMonotonicNanoseconds: deadline) && value == 0 {
                    throw GuardedWaitError(reason: .timedOut(timeout!), callSite: callSite, thread: .current)
                }
            } else {
                condition.wait()
            }
        }
        value -= 1
    }

    /// Returns a permit, waking one waiter.
    public func signal() {
        condition.withLock { value += 1 }
        condition.signal()
    }
}

extension GuardedSemaphore: WaitResource {
    /// `GuardedSemaphore "name"`.
    package var waitDescription: String { "GuardedSemaphore \"\(name)\"" }

    /// Nobody: any thread may signal it.
    package func waitHolders() -> [WaitGraph.Holding] { [] }

    /// Unknown: signals are not tracked.
    package var waitLastRelease: UInt64 { 0 }
}
