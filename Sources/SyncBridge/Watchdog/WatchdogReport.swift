public import FoundationEssentials

/// What the watchdog saw: a band of Swift's cooperative pool (or an event loop) that stopped
/// running tasks, a single job that ran too long, or a blocking call made on a cooperative (or
/// event loop) thread.
///
/// A report reads as one headline, the facts, then the stacks:
///
/// ```
/// Swift's cooperative pool (band default) ran no task for 312 ms (threshold 100 ms): its threads are blocked
///   since: 2026-11-27T01:40:12.345Z, still blocked when reported
///   thread 4242 (cooperative), waiting in the kernel:
///     #0 __GI___clock_nanosleep + 0x5d (libc.so.6 +0xe3fed)
///     #1 usleep + 0x34 (libc.so.6 +0xf0b14)
///     #2 MyApp.LegacyCache.refresh() -> () + 0x2c (MyApp +0x4a21c)
/// ```
public struct WatchdogReport: Sendable, Hashable, Codable, CustomStringConvertible {
    /// What kind of problem the report describes.
    public enum Kind: String, Sendable, Hashable, Codable {
        /// A band of the cooperative pool, or a watched event loop (``WatchdogReport/eventLoop``),
        /// ran no task for longer than the threshold: every thread of the band was busy or blocked.
        case stall
        /// One job of the global executor ran longer than the threshold (per-job mode).
        case slowJob
        /// A blocking call was made on a cooperative thread, or an event loop's.
        case blockingCall
    }

    /// What kind of problem this is.
    public let kind: Kind
    /// The band (`userInitiated`, `default`, `utility`, `background`), for stalls and slow jobs
    /// of the cooperative pool.
    public let band: String?
    /// The event loop (its thread's name, `NIO-ELT-0-#1`) that stalled or made the blocking call;
    /// `nil` for Swift's cooperative pool.
    public let eventLoop: String?
    /// When the problem started (wall clock).
    public let startedAt: Date
    /// How long it lasted, or had lasted when reported if ``isOngoing``.
    public let duration: Duration
    /// `true` when the problem was still going on at the time of the report; a later report with
    /// `isOngoing == false` gives the total duration.
    public let isOngoing: Bool
    /// The threshold in force.
    public let threshold: Duration
    /// For blocking calls: what was called (`Blocking.call`, `waitForAsync`…).
    public let operation: String?
    /// For blocking calls: where it was called.
    public let callSite: String?
    /// The stacks of the threads involved, captured while the problem was going on.
    public let stacks: [ThreadStack]
    /// The test scope the report belongs to, when a test trait was watching (see
    /// `WatchdogScope`).
    public let scopeID: UInt64?

    /// Creates a report.
    public init(
        kind: Kind,
        band: String? = nil,
        eventLoop: String? = nil,
        startedAt: Date,
        duration: Duration,
        isOngoing: Bool,
        threshold: Duration,
        operation: String? = nil,
        callSite: String? = nil,
        stacks: [ThreadStack] = [],
        scopeID: UInt64? = nil
    ) {
        self.kind = kind
        self.band = band
        self.eventLoop = eventLoop
        self.startedAt = startedAt
        self.duration = duration
        self.isOngoing = isOngoing
        self.threshold = threshold
        self.operation = operation
        self.callSite = callSite
        self.stacks = stacks
        self.scopeID = scopeID
    }

    /// One line saying what happened.
    public var headline: String {
        switch kind {
        case .stall:
            let busy = !stacks.isEmpty && stacks.allSatisfy(\.wasRunning)
            let state =
                !isOngoing
                ? "it has recovered"
                : busy ? "its threads are busy running synchronous code" : "its threads are blocked"
            if let eventLoop {
                let state =
                    !isOngoing
                    ? "it has recovered"
                    : busy ? "its thread is busy running synchronous code" : "its thread is blocked"
                return
                    "event loop \(eventLoop) ran no task for \(Self.milliseconds(duration)) (threshold \(Self.milliseconds(threshold))): \(state)"
            }
            return
                "Swift's cooperative pool (band \(band ?? "?")) ran no task for \(Self.milliseconds(duration)) (threshold \(Self.milliseconds(threshold))): \(state)"
        case .slowJob:
            return
                "one job on Swift's cooperative pool (band \(band ?? "?")) \(isOngoing ? "has run" : "ran") for \(Self.milliseconds(duration)) (threshold \(Self.milliseconds(threshold))) without suspending"
        case .blockingCall:
            if let eventLoop {
                return
                    "blocking call \(operation ?? "?") on event loop \(eventLoop) at \(callSite ?? "an unknown place"): move it to a BlockingPool (BlockingPool.runIfActive(eventLoop:) in SyncBridgeNIO)"
            }
            return
                "blocking call \(operation ?? "?") on a cooperative thread at \(callSite ?? "an unknown place"): move it to a BlockingPool or a ThreadExecutor"
        }
    }

    /// The headline, the facts, then each stack.
    public var description: String {
        var lines = [headline]
        let since = startedAt.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        lines.append(
            "  since: \(since)\(kind == .blockingCall ? "" : isOngoing ? ", still going on when reported" : ", total \(Self.milliseconds(duration))")"
        )
        for stack in stacks {
            lines.append(stack.description.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        }
        if stacks.isEmpty && isOngoing {
            lines.append("  (no stack: the threads could not be sampled)")
        }
        return lines.joined(separator: "\n")
    }

    /// `312 ms`.
    package static func milliseconds(_ duration: Duration) -> String {
        "\(duration.millisecondCount) ms"
    }

    /// Whether any stack of the report contains a frame whose symbol contains `text`.
    public func containsFrame(_ text: String) -> Bool {
        stacks.contains { $0.contains(symbol: text) }
    }
}
