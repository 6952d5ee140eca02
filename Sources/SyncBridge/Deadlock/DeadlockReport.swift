public import FoundationEssentials

/// The trap a ``DeadlockReport`` names.
public struct DeadlockPattern: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The pattern's stable name, as metrics and JSON lines carry it: `cooperative-thread-wait`…
    public let name: String

    private init(_ name: String) { self.name = name }

    /// A synchronous wait (``waitForAsync(timeout:fileID:line:_:)``, ``GuardedSemaphore``) on a
    /// thread of Swift's cooperative pool. Refused at once.
    public static let cooperativeThreadWait = DeadlockPattern("cooperative-thread-wait")
    /// Synchronous code on a ``ThreadExecutor``'s thread (a connection's) waits for work that
    /// needs that same thread.
    public static let selfWait = DeadlockPattern("self-wait")
    /// Every thread of a ``BlockingPool`` waits synchronously for work queued behind it on the same
    /// pool.
    public static let blockingPoolStarvation = DeadlockPattern("blocking-pool-starvation")
    /// A task that holds a connection of a pool asks the same pool for another while the pool
    /// cannot grow.
    public static let nestedPoolLease = DeadlockPattern("nested-pool-lease")
    /// Two locks of SyncBridge (``CheckedMutex``, ``AsyncMutex``) were taken in both orders.
    public static let lockOrderInversion = DeadlockPattern("lock-order-inversion")
    /// Tasks wait for each other in a cycle (locks, connection pools, guarded waits): none can go on.
    public static let waitCycle = DeadlockPattern("wait-cycle")
    /// A wait has lasted longer than the detector's threshold; no cycle is known.
    public static let stuckWait = DeadlockPattern("stuck-wait")

    /// Every pattern, in the catalogue's order.
    public static let all: [DeadlockPattern] = [
        .cooperativeThreadWait, .selfWait, .blockingPoolStarvation, .nestedPoolLease, .lockOrderInversion, .waitCycle,
        .stuckWait,
    ]

    /// The pattern's name.
    public var description: String { name }

    /// Decodes a pattern from its name.
    public init(from decoder: any Decoder) throws {
        name = try decoder.singleValueContainer().decode(String.self)
    }

    /// Encodes the pattern as its name.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}

/// What a ``DeadlockDetector`` found, readable as Linux's lockdep reports are: a headline naming
/// the pattern, then the chain — who waits for what, held by whom, each with its task or thread and
/// call site — and what to do instead.
///
/// ```text
/// DEADLOCK (wait-cycle): 2 tasks wait for each other; none can go on
///   task 'transfer-a' waits for AsyncMutex "ledger" at Bank/Transfer.swift:41
///     held by task 'transfer-b', which took it at Bank/Transfer.swift:40
///   task 'transfer-b' waits for AsyncMutex "accounts" at Bank/Transfer.swift:41
///     held by task 'transfer-a', which took it at Bank/Transfer.swift:40
///   Fix: take the locks in one order everywhere, or hold one at a time.
/// ```
public struct DeadlockReport: Sendable, Hashable, Codable, CustomStringConvertible {
    /// One line of the chain.
    public struct Step: Sendable, Hashable, Codable, CustomStringConvertible {
        /// The task or thread: `task 'name' (0x…)`, `thread sb-pool-1 (tid 42)`.
        public var party: String
        /// What it does: `waits for`, `holds`, `acquired`, `leased`.
        public var action: String
        /// The lock, pool, task or semaphore.
        public var object: String
        /// Where, as `#fileID:#line`; `nil` when unknown.
        public var callSite: String?

        package init(party: String, action: String, object: String, callSite: String?) {
            self.party = party
            self.action = action
            self.object = object
            self.callSite = callSite
        }

        /// `party action object at callSite`.
        public var description: String {
            [party, action, object].filter { !$0.isEmpty }.joined(separator: " ") + (callSite.map { " at \($0)" } ?? "")
        }
    }

    /// The pattern.
    public var pattern: DeadlockPattern
    /// One sentence: what happened.
    public var headline: String
    /// The chain or cycle, in order.
    public var chain: [Step]
    /// What to do instead.
    public var advice: String
    /// When it was detected.
    public var detectedAt: Date
    /// Whether the detector made the waiting operation throw ``DeadlockError`` (throw mode).
    public var thrown: Bool
    /// The test (or other scope) the report belongs to, when a scoped detector received it.
    package var scopeID: UInt64?

    package init(pattern: DeadlockPattern, headline: String, chain: [Step], advice: String, scopeID: UInt64? = nil) {
        self.pattern = pattern
        self.headline = headline
        self.chain = chain
        self.advice = advice
        self.detectedAt = Date()
        self.thrown = false
        self.scopeID = scopeID
    }

    /// The headline, the chain (one step per line) and the fix.
    public var description: String {
        var lines = ["DEADLOCK (\(pattern)): \(headline)"]
        for step in chain { lines.append("  \(step)") }
        lines.append("  Fix: \(advice)")
        return lines.joined(separator: "\n")
    }

    private enum CodingKeys: String, CodingKey {
        case pattern, headline, chain, advice, detectedAt, thrown, scopeID
    }
}

/// A detector in throw mode ended a wait that could never end; the report says why. (Stuck waits,
/// which may still end, are reported but never interrupted.)
public struct DeadlockError: Error, Hashable, CustomStringConvertible {
    /// What the detector found.
    public let report: DeadlockReport

    package init(report: DeadlockReport) {
        self.report = report
    }

    /// The report, in full.
    public var description: String { report.description }
}
