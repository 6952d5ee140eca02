import FoundationEssentials

/// The test (or other scope) a report belongs to: a task-local that test traits set, so that a
/// blocking call is attributed to the test whose task made it even when tests run in parallel.
///
/// Stalls cannot be attributed to a task. A scope that expects one claims the stalls that begin
/// while it runs (``claimingStalls(_:_:)``): every other watchdog drops them, so that the
/// expected stall reaches only the scope's own watchdog.
package enum WatchdogScope {
    @TaskLocal package static var current: UInt64?

    /// Whether this task runs inside ``exclusively(_:)``: its turn is already taken.
    @TaskLocal private static var holdsTurn = false

    private static let counter = Locked<UInt64>(0)

    private static let turns = AsyncSerializer()

    /// Runs `body` while no other `exclusively` body runs in the process: tests that watch for
    /// stalls, and tests that block the cooperative pool on purpose, take turns, since a stall
    /// cannot be attributed to the task that caused it. A call made inside another (an expected
    /// stall inside a test that carries the watchdog trait) runs at once, in the turn it is in.
    package static func exclusively<Result: Sendable>(
        _ body: @Sendable () async throws -> Result
    ) async throws -> Result {
        if holdsTurn { return try await body() }
        return try await turns.run { try await $holdsTurn.withValue(true) { try await body() } }
    }

    /// Runs `body` in `scope`. With per-job timing (`timingJobs`), `body` runs in a child task:
    /// the calling task may be on a cooperative thread it reached before the watchdog redirected
    /// the global executor's jobs, and code that blocks before `body`'s first suspension would
    /// stay there, untimed. A child task's first job goes through the redirect.
    package static func run(
        _ scope: UInt64,
        timingJobs: Bool,
        _ body: @Sendable () async throws -> Void
    ) async throws {
        try await $current.withValue(scope) {
            guard timingJobs else { return try await body() }
            // The group awaits its child before returning: `body` does not outlive this call.
            try await withoutActuallyEscaping(body) { body in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await body() }
                    try await group.waitForAll()
                }
            }
        }
    }

    /// A new scope identifier.
    package static func next() -> UInt64 {
        counter.withLock { value in
            value += 1
            return value
        }
    }

    // MARK: Claimed stalls

    /// A span of time whose stalls belong to one scope; `end` is `nil` while it lasts.
    private struct Claim {
        let scope: UInt64
        let start: Date
        var end: Date?
    }

    /// The claims, open and recent: a stall that began inside a claim is reported again when it
    /// ends, after the claim was released.
    private static let claims = Locked<[UInt64: Claim]>([:])

    /// How many released claims are kept for the ends of their stalls.
    private static let releasedClaimsKept = 16

    /// Runs `body` while the stalls (and, in per-job mode, the slow jobs) that begin belong to
    /// `scope`: watchdogs of other scopes, and those of none, drop them.
    package static func claimingStalls<Result: Sendable>(
        _ scope: UInt64,
        _ body: () async throws -> Result
    ) async rethrows -> Result {
        claims.withLock { $0[scope] = Claim(scope: scope, start: Date()) }
        defer {
            claims.withLock { claims in
                claims[scope]?.end = Date()
                let released = claims.values.filter { $0.end != nil }.sorted { $0.start < $1.start }
                for claim in released.dropLast(releasedClaimsKept) { claims[claim.scope] = nil }
            }
        }
        return try await body()
    }

    /// Whether `report`, a stall or slow job, began during a claim of another scope than
    /// `watchdogScope`. A stall begins when the probe that waits was sent, about one probe
    /// interval before the band was blocked (two when the watchdog's thread wakes late): a claim
    /// starts two intervals early. A stall that began earlier and lasts into the claim is not the
    /// claim's.
    static func isClaimed(
        _ report: WatchdogReport,
        byOtherThan watchdogScope: UInt64?,
        probeInterval: Duration
    ) -> Bool {
        guard report.kind != .blockingCall else { return false }
        let early = 2 * Double(probeInterval.nanosecondCount) / 1e9
        return claims.withLock { claims in
            claims.values.contains { claim in
                claim.scope != watchdogScope && report.startedAt >= claim.start - early
                    && report.startedAt <= (claim.end ?? .distantFuture)
            }
        }
    }
}

/// Runs async operations one at a time, in arrival order.
actor AsyncSerializer {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func run<Result: Sendable>(_ operation: @Sendable () async throws -> Result) async throws -> Result {
        if busy {
            await withCheckedContinuation { waiters.append($0) }
        }
        busy = true
        defer {
            if waiters.isEmpty {
                busy = false
            } else {
                waiters.removeFirst().resume()
            }
        }
        return try await operation()
    }
}
