import CSyncBridgeShims
import DequeModule

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The per-job mode of the watchdog: every job enqueued on Swift's global executor is redirected
/// (through the runtime's `swift_task_enqueueGlobal_hook`) to threads of this executor, which run
/// it exactly as the global executor would (`swift_job_run` with the generic executor) and time
/// it. A single job that runs too long is then visible even while other threads are free, which
/// the lag probe cannot see.
///
/// For tests: all bands share these threads, and every job pays a lock and a thread hand-off.
/// Installed while at least one watchdog asks for it; its threads stay for the life of the process
/// once started, so a job handed over while the hook is being removed still runs. Jobs that the
/// runtime schedules without the hook (the resumption of `Task.sleep`, the main actor) run on
/// the cooperative pool as usual.
enum InstrumentedGlobalExecutor {
    /// A job running now.
    struct RunningJob: Sendable {
        let threadID: Int32
        let sequence: UInt64
        let startedAt: UInt64
        /// The accepted blocking scope the job entered (``Blocking/allowed(_:fileID:line:_:)``).
        var allowance: Blocking.Allowance?
    }

    /// A job that ran longer than the slow-job threshold.
    struct FinishedJob: Sendable {
        let threadID: Int32
        let sequence: UInt64
        let startedAt: UInt64
        let endedAt: UInt64
        let allowance: Blocking.Allowance?
    }

    /// Records that the job running on `threadID`, if any, entered an accepted blocking scope.
    static func markAllowed(on threadID: Int32, _ allowance: Blocking.Allowance) {
        state.withLock { state in
            if state.running[threadID]?.allowance == nil { state.running[threadID]?.allowance = allowance }
        }
    }

    private struct State {
        var users = 0
        var threadsStarted = 0
        var queue = Deque<UnsafeMutableRawPointer>()
        var running: [Int32: RunningJob] = [:]
        var nextSequence: UInt64 = 0
        var completed: UInt64 = 0
        var slowThresholds: [UInt64] = []
        var finishedSlow: [FinishedJob] = []
    }

    /// Guards the state; the raw job pointers it holds are only handed to `swift_job_run`, once.
    private static let state = Locked(State())
    private static let condition = ConditionLock()

    /// Starts redirecting (on the first use) with `threadCount` threads; `slowThreshold` is the
    /// watchdog's threshold, below which finished jobs are not recorded.
    static func acquire(threadCount: Int, slowThreshold: Duration) -> Bool {
        let threshold = Watchdog.nanoseconds(slowThreshold)
        let (first, toStart) = state.withLock { state -> (Bool, Int) in
            state.users += 1
            state.slowThresholds.append(threshold)
            let toStart = max(0, threadCount - state.threadsStarted)
            state.threadsStarted += toStart
            return (state.users == 1, toStart)
        }
        for _ in 0..<toStart { startThread() }
        guard first else { return true }
        let installed = sb_global_enqueue_hook_install { job in InstrumentedGlobalExecutor.enqueue(job) } == 0
        if !installed { release(slowThreshold: slowThreshold) }
        return installed
    }

    /// Stops redirecting when the last user releases it. Jobs already handed over still run.
    static func release(slowThreshold: Duration) {
        let threshold = Watchdog.nanoseconds(slowThreshold)
        let last = state.withLock { state -> Bool in
            state.users -= 1
            if let index = state.slowThresholds.firstIndex(of: threshold) { state.slowThresholds.remove(at: index) }
            return state.users == 0
        }
        if last { _ = sb_global_enqueue_hook_uninstall() }
    }

    /// Whether the calling thread runs redirected jobs.
    static var isCurrentThread: Bool {
        sb_runs_global_jobs() != 0
    }

    /// The jobs running now.
    static var running: [RunningJob] {
        state.withLock { Array($0.running.values) }
    }

    /// How many redirected jobs have finished.
    static var completedJobs: UInt64 {
        state.withLock { $0.completed }
    }

    /// The slow jobs finished since the last call.
    static func takeFinishedSlowJobs() -> [FinishedJob] {
        state.withLock { state in
            defer { state.finishedSlow.removeAll() }
            return state.finishedSlow
        }
    }

    private static func enqueue(_ job: UnsafeMutableRawPointer) {
        state.withLock { $0.queue.append(job) }
        condition.withLock { condition.signal() }
    }

    private static func startThread() {
        var handle = pthread_t()
        let result = sb_thread_create(
            &handle,
            { _ in
                InstrumentedGlobalExecutor.serve()
                return nil
            },
            nil,
            0
        )
        precondition(result == 0, "per-job executor: pthread_create failed with \(result)")
        pthread_detach(handle)
    }

    private static func serve() {
        _ = sb_set_current_thread_name("sb-global-jobs")
        sb_set_runs_global_jobs(1)
        let threadID = sb_gettid()
        while true {
            let next = state.withLock { state -> (UnsafeMutableRawPointer, RunningJob)? in
                guard let job = state.queue.popFirst() else { return nil }
                state.nextSequence += 1
                let running = RunningJob(
                    threadID: threadID,
                    sequence: state.nextSequence,
                    startedAt: monotonicNanoseconds(),
                    allowance: nil
                )
                state.running[threadID] = running
                return (job, running)
            }
            guard let (job, running) = next else {
                condition.lock()
                if state.withLock({ $0.queue.isEmpty }) { condition.wait() }
                condition.unlock()
                continue
            }
            _ = sb_run_global_job(job)
            let end = monotonicNanoseconds()
            state.withLock { state in
                let allowance = state.running.removeValue(forKey: threadID)?.allowance
                state.completed += 1
                if let threshold = state.slowThresholds.min(), end - running.startedAt > threshold {
                    state.finishedSlow.append(
                        FinishedJob(
                            threadID: threadID,
                            sequence: running.sequence,
                            startedAt: running.startedAt,
                            endedAt: end,
                            allowance: allowance
                        )
                    )
                }
            }
        }
    }
}
