import Testing

@testable import SyncBridge

/// The watchdog's decisions over recorded evidence — scheduler times and the tasks the sampled
/// threads ran, halfway to the threshold and at it — without threads, clocks or a real stall.
@Suite("Watchdog stall classifier")
struct StallClassifierTests {
    typealias Times = StallClassifier.SchedulerTimes
    typealias Sample = StallClassifier.Sample

    static let ms: UInt64 = 1_000_000
    static let threshold = 100 * ms

    /// Times that grew by `running` and `waiting` milliseconds between the two readings.
    static func times(
        from start: Times = Times(running: 5_000 * ms, waiting: 700 * ms),
        running: UInt64,
        waiting: UInt64
    ) -> (Times, Times) {
        (start, Times(running: start.running + running * ms, waiting: start.waiting + waiting * ms))
    }

    /// One thread's evidence: the task halfway and at the threshold, and how its times grew.
    static func verdict(
        _ threads: [(id: Int32, halfway: UInt, now: UInt, running: UInt64, waiting: UInt64)],
        capturesStacks: Bool = true
    ) -> StallClassifier.Verdict {
        var tasks: [Int32: UInt] = [:]
        var before: [Int32: Times] = [:]
        var after: [Int32: Times] = [:]
        for thread in threads {
            tasks[thread.id] = thread.halfway
            (before[thread.id], after[thread.id]) = times(running: thread.running, waiting: thread.waiting)
        }
        return StallClassifier.classify(
            samples: threads.map { Sample(threadID: $0.id, task: $0.now) },
            capturesStacks: capturesStacks,
            tasksHalfway: tasks,
            timesHalfway: before,
            timesNow: after,
            threshold: threshold
        )
    }

    @Test("a thread asleep in a blocking call (neither running nor waiting for a CPU, same task) is a stall")
    func blockingCall() {
        #expect(Self.verdict([(1, 0xA, 0xA, 0, 0), (2, 0xB, 0xC, 40, 1)]) == .blocked)
    }

    @Test("a thread computing for long (running, same task) is a stall")
    func longComputation() {
        #expect(Self.verdict([(1, 0xA, 0xA, 49, 1)]) == .blocked)
    }

    @Test("threads that stayed in their task but mostly waited for a CPU are starvation")
    func preempted() {
        guard case .starved(let reason) = Self.verdict([(1, 0xA, 0xA, 5, 40), (2, 0xB, 0xB, 8, 30)]) else {
            Issue.record("expected starvation")
            return
        }
        #expect(reason.contains("waited for a CPU"))
        // One thread that slept in its task keeps the stall reported.
        #expect(Self.verdict([(1, 0xA, 0xA, 5, 40), (2, 0xB, 0xB, 0, 0)]) == .blocked)
        // Waiting must exceed a quarter of the half-threshold window (12.5 ms) and the running time.
        #expect(Self.verdict([(1, 0xA, 0xA, 2, 12)]) == .blocked)
        #expect(Self.verdict([(1, 0xA, 0xA, 20, 18)]) == .blocked)
    }

    @Test("every thread seen in a task halfway moved on to another: saturation")
    func saturated() {
        #expect(Self.verdict([(1, 0xA, 0xB, 50, 0), (2, 0xC, 0xD, 50, 0)]) == .saturated)
        // A thread not seen in a task halfway does not decide.
        #expect(Self.verdict([(1, 0xA, 0xB, 50, 0), (2, 0, 0xE, 50, 0)]) == .saturated)
        // One thread kept its task: that call is long.
        #expect(Self.verdict([(1, 0xA, 0xB, 50, 0), (2, 0xC, 0xC, 50, 0)]) == .blocked)
        // Nothing seen halfway: no evidence of saturation.
        #expect(Self.verdict([(1, 0, 0xB, 50, 0)]) == .blocked)
    }

    @Test("no thread running a job while stacks are captured: the probe waited for a thread, not for code")
    func noRunningThread() {
        guard case .starved(let reason) = Self.verdict([]) else {
            Issue.record("expected starvation")
            return
        }
        #expect(reason.contains("no cooperative thread"))
        // Without stacks there is no evidence either way, and the stall stands.
        #expect(Self.verdict([], capturesStacks: false) == .blocked)
    }

    @Test("the band's threads mostly runnable off a CPU over the second half: starvation")
    func bandStarved() {
        let (a0, a1) = Self.times(running: 3, waiting: 35)
        let (b0, b1) = Self.times(running: 10, waiting: 20)
        #expect(StallClassifier.isStarved(before: [1: a0, 2: b0], after: [1: a1, 2: b1], threshold: Self.threshold))
        // A blocked band neither runs nor waits.
        let (c0, c1) = Self.times(running: 0, waiting: 0)
        #expect(!StallClassifier.isStarved(before: [1: c0, 2: c0], after: [1: c1, 2: c1], threshold: Self.threshold))
        // Waiting must exceed a quarter of the window summed over the threads (2 × 50 ms / 4 =
        // 25 ms): 2 × 12 ms is not enough, 2 × 13 ms is.
        let (d0, d1) = Self.times(running: 1, waiting: 12)
        let (e0, e1) = Self.times(running: 1, waiting: 13)
        #expect(StallClassifier.isStarved(before: [1: e0, 2: e0], after: [1: e1, 2: e1], threshold: Self.threshold))
        #expect(!StallClassifier.isStarved(before: [1: d0, 2: d0], after: [1: d1, 2: d1], threshold: Self.threshold))
        // Threads that ended since halfway are left out; no known thread is no evidence.
        #expect(StallClassifier.isStarved(before: [1: a0, 9: b0], after: [1: a1], threshold: Self.threshold))
        #expect(!StallClassifier.isStarved(before: [:], after: [:], threshold: Self.threshold))
    }
}
