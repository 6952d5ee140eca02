/// The watchdog's decisions, as pure functions of what it recorded: whether a band whose probe
/// waited past the threshold was **blocked** (reported, with stacks), **starved** of CPU by an
/// overloaded machine, or **saturated** with short tasks (both counted, not reported).
///
/// The watchdog records, for the stalled band, halfway to the threshold: its threads' scheduler
/// times (time on a CPU, time runnable but waiting for one) and the task each sampled thread was
/// running; at the threshold: the stacks of the threads running a job, and their scheduler times
/// again. A blocked thread neither runs nor waits for a CPU and stays in one task; a thread
/// computing for long runs and stays in one task (both are long calls, and reported); a thread of
/// an overloaded machine waits for a CPU; a saturated band's threads move on to other tasks.
enum StallClassifier {
    /// Nanoseconds a thread spent on a CPU and waiting for one.
    struct SchedulerTimes: Equatable {
        var running: UInt64
        var waiting: UInt64
    }

    /// A thread sampled at the threshold: its kernel id and the task it was running (0: none).
    struct Sample: Equatable {
        var threadID: Int32
        var task: UInt
    }

    /// What the watchdog makes of a stall.
    enum Verdict: Equatable {
        /// Code kept the band's threads: reported.
        case blocked
        /// The band waited for a CPU or for a thread, not for code: counted as starvation.
        case starved(reason: String)
        /// The band's threads kept running different tasks: counted as saturation.
        case saturated
    }

    /// Whether the band's known threads spent the second half of the wait mostly runnable but off
    /// a CPU: the machine was overloaded, and no code of the band blocked.
    ///
    /// - Parameters:
    ///   - before: The threads' scheduler times halfway to the threshold.
    ///   - after: Their times at the threshold (threads that ended are left out).
    ///   - threshold: The watchdog's threshold, in nanoseconds.
    static func isStarved(before: [Int32: SchedulerTimes], after: [Int32: SchedulerTimes], threshold: UInt64) -> Bool {
        guard !before.isEmpty else { return false }
        var running: UInt64 = 0
        var waiting: UInt64 = 0
        for (threadID, start) in before {
            guard let end = after[threadID] else { continue }
            running += end.running &- start.running
            waiting += end.waiting &- start.waiting
        }
        // Half the threshold went by since the snapshot, for each thread.
        let window = threshold / 2 * UInt64(before.count)
        return waiting > running && waiting > window / 4
    }

    /// The verdict on a stall the scheduler times of the band did not explain as starvation.
    ///
    /// - Parameters:
    ///   - samples: The threads running a job at the threshold; empty when stacks are not
    ///     captured or none ran a job.
    ///   - capturesStacks: Whether the watchdog samples stacks at all.
    ///   - tasksHalfway: The task each sampled thread ran halfway to the threshold (0: none).
    ///   - timesHalfway: The sampled threads' scheduler times then.
    ///   - timesNow: Their scheduler times at the threshold.
    ///   - threshold: The watchdog's threshold, in nanoseconds.
    static func classify(
        samples: [Sample],
        capturesStacks: Bool,
        tasksHalfway: [Int32: UInt],
        timesHalfway: [Int32: SchedulerTimes],
        timesNow: [Int32: SchedulerTimes],
        threshold: UInt64
    ) -> Verdict {
        if capturesStacks && samples.isEmpty {
            // No cooperative thread runs a job, of this band or any other: nothing blocks the
            // band. Its probe waits for the thread pool to start or wake a thread, as on a
            // machine overloaded by other processes.
            return .starved(
                reason:
                    "no cooperative thread was running a job: the probe waited for the thread pool or a CPU, not for blocking code"
            )
        }
        if isPreempted(
            samples: samples,
            tasksHalfway: tasksHalfway,
            timesHalfway: timesHalfway,
            timesNow: timesNow,
            threshold: threshold
        ) {
            return .starved(
                reason:
                    "the threads that stayed in one task mostly waited for a CPU: an overloaded machine, not a long call"
            )
        }
        if isSaturated(samples: samples, tasksHalfway: tasksHalfway) {
            return .saturated
        }
        return .blocked
    }

    /// Whether every sampled thread that stayed in one task since halfway spent that time mostly
    /// waiting for a CPU (runnable, preempted) rather than running or sleeping. A thread asleep in
    /// a blocking call, or running its long computation, is not preempted, and keeps the stall
    /// reported.
    static func isPreempted(
        samples: [Sample],
        tasksHalfway: [Int32: UInt],
        timesHalfway: [Int32: SchedulerTimes],
        timesNow: [Int32: SchedulerTimes],
        threshold: UInt64
    ) -> Bool {
        let stayed = samples.filter { sample in
            tasksHalfway[sample.threadID].map { $0 != 0 && $0 == sample.task } ?? false
        }
        guard !stayed.isEmpty else { return false }
        let window = threshold / 2
        return stayed.allSatisfy { sample in
            guard let before = timesHalfway[sample.threadID], let after = timesNow[sample.threadID] else {
                return false
            }
            let running = after.running &- before.running
            let waiting = after.waiting &- before.waiting
            return waiting > running && waiting > window / 4
        }
    }

    /// Whether every thread seen in a task halfway has moved on to another task: the pool was
    /// saturated with work, and no single call kept a thread. A thread not seen in a task then
    /// (idle, or serving a band the probes do not cover) cannot show a long call yet; if it starts
    /// one, the band's next probe catches it.
    static func isSaturated(samples: [Sample], tasksHalfway: [Int32: UInt]) -> Bool {
        let judged = samples.filter { sample in tasksHalfway[sample.threadID].map { $0 != 0 } ?? false }
        guard !judged.isEmpty else { return false }
        return judged.allSatisfy { sample in sample.task != tasksHalfway[sample.threadID] }
    }
}
