/// A mutex for short critical sections in bridging code, whose lock order the
/// ``DeadlockDetector`` checks, as Linux's lockdep does.
///
/// Each mutex belongs to a *lock class*: by default the place it is created (`#fileID:#line`), so
/// that every mutex made by one line of code is one class; or a name you give. When a detector
/// runs, taking a lock of class B while holding one of class A records the order A → B; taking
/// them in the other order anywhere else is reported on the first occurrence, with both
/// acquisition sites — before the two orders ever meet and hang. Taking the same mutex again on
/// the thread that holds it stops the process with a report (it could only hang).
///
/// With no detector running, it is a plain pthread mutex.
///
/// ```swift
/// let accounts = CheckedMutex([String: Int](), lockClass: "accounts")
/// accounts.withLock { $0["alice", default: 0] += 10 }
/// ```
public final class CheckedMutex<Value>: @unchecked Sendable {
    // Safe to share: `value` is reached only inside `withLock`, with `lock` held, and it moves in
    // and out as `sending`, so no reference to it escapes to another thread.
    private let lock = ConditionLock()
    private var value: Value
    /// The lock class's name.
    public let lockClass: String
    private let instance = WaitGraph.newResourceID()

    /// Creates a mutex guarding `value`.
    ///
    /// - Parameters:
    ///   - value: The guarded state.
    ///   - lockClass: The lock class's name; by default the creation site.
    ///   - fileID: The creation site; leave the default.
    ///   - line: The creation site; leave the default.
    public init(_ value: sending Value, lockClass: String? = nil, fileID: StaticString = #fileID, line: UInt = #line) {
        self.value = value
        self.lockClass = lockClass ?? "\(fileID):\(line)"
    }

    /// Runs `body` with the lock held and exclusive access to the value.
    ///
    /// - Parameters:
    ///   - fileID: The acquisition site, for reports; leave the default.
    ///   - line: The acquisition site, for reports; leave the default.
    ///   - body: The critical section. Keep it short: it cannot suspend.
    /// - Returns: What `body` returns.
    public func withLock<Result, E: Error>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        let tracked = WaitGraph.isActive
        if tracked { willLock(at: CallSite(fileID: fileID, line: line)) }
        lock.lock()
        defer {
            lock.unlock()
            if tracked { HeldLock.popFromThread() }
        }
        return try body(&value)
    }

    private func willLock(at callSite: CallSite) {
        let held = HeldLock.current
        let party = Party.current
        if let holding = held.first(where: { $0.instance == instance && !$0.isHeldByWaiter }) {
            let report = DeadlockReport(
                pattern: .waitCycle,
                headline: "a thread takes a CheckedMutex it already holds; it would wait for itself forever",
                chain: [
                    .init(
                        party: party.label,
                        action: "takes",
                        object: "CheckedMutex \"\(lockClass)\"",
                        callSite: "\(callSite)"
                    ),
                    .init(party: "  which it took", action: "", object: "", callSite: "\(holding.callSite)"),
                ],
                advice: "do not take the mutex again inside its critical section; pass the value down instead",
                scopeID: WatchdogScope.current
            )
            DeadlockDetector.report(report, refusing: true)
            fatalError("\(report)")
        }
        if let report = LockOrder.acquiring(lockClass, kind: "CheckedMutex", at: callSite, holding: held, party: party)
        {
            DeadlockDetector.report(report, refusing: false)
        }
        HeldLock.pushOnThread(
            HeldLock(
                lockClass: lockClass,
                kind: "CheckedMutex",
                instance: instance,
                callSite: callSite,
                next: HeldLock.threadList
            )
        )
    }
}
