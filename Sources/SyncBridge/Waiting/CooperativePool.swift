import CSyncBridgeShims
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Answers "is the calling thread one of Swift's cooperative-pool threads?" from synchronous
/// code, where blocking would stall every task of its band.
///
/// On Linux the global concurrent executor drains a libdispatch queue labelled
/// `Swift global concurrent queue`; reading the current queue's label costs about 10 ns. That
/// label is an implementation detail of the runtime, so the first check also starts a probe task
/// that reads the label from inside a real task and adopts it if the runtime ever changes it;
/// ``verify()`` runs the probe and reports what it found.
public enum CooperativePool {
    /// The label the Swift 5.9–6.3 runtimes give the global concurrent executor on Linux.
    static let knownLabel = "Swift global concurrent queue"

    /// The label the probe saw inside a task, when it differs from `knownLabel`.
    private static let labelOverride = Locked<String?>(nil)
    private static let probeStarted = Atomic<Bool>(false)

    /// What the probe found.
    public struct Verification: Hashable, Sendable, CustomStringConvertible {
        /// The dispatch label seen from inside a task; `nil` when there was none.
        public let labelInsideTask: String?
        /// Whether the check recognises a task's thread as cooperative.
        public let detectsTaskThreads: Bool

        /// What the probe found, in one sentence.
        public var description: String {
            detectsTaskThreads
                ? "cooperative threads detected by dispatch label '\(labelInsideTask ?? "")'"
                : "cooperative threads NOT detectable: label inside a task is \(labelInsideTask.map { "'\($0)'" } ?? "absent")"
        }
    }

    /// Whether the calling thread is one of Swift's cooperative-pool threads (or, while a
    /// watchdog times every job, one of the threads that run the global executor's jobs in its
    /// place).
    public static var isCurrentThread: Bool {
        if !probeStarted.load(ordering: .relaxed) { startProbe() }
        if InstrumentedGlobalExecutor.isCurrentThread { return true }
        guard let label = sb_current_dispatch_queue_label() else { return false }
        if strcmp(label, knownLabel) == 0 { return true }
        guard let override = labelOverride.withLock({ $0 }) else { return false }
        return String(cString: label) == override
    }

    /// Runs the probe (once per process) and returns what it found: the label a task's thread
    /// carries and whether ``isCurrentThread`` recognises it.
    public static func verify() async -> Verification {
        startProbe()
        let verification = await Task.detached { () -> Verification in
            let label = sb_current_dispatch_queue_label().map { String(cString: $0) }
            return Verification(labelInsideTask: label, detectsTaskThreads: isCurrentThread)
        }.value
        return verification
    }

    private static func startProbe() {
        guard !probeStarted.exchange(true, ordering: .relaxed) else { return }
        Task.detached {
            // On a thread of the watchdog's per-job mode the label says nothing: probe again later.
            if InstrumentedGlobalExecutor.isCurrentThread {
                probeStarted.store(false, ordering: .relaxed)
                return
            }
            // libdispatch's root queues are what every thread outside a queue reports (a plain
            // thread shows the default-QoS root queue's label): never adopt one of those.
            if let label = sb_current_dispatch_queue_label().map({ String(cString: $0) }), label != knownLabel,
                !label.hasPrefix("com.apple.root.")
            {
                labelOverride.withLock { $0 = label }
            }
        }
    }
}
