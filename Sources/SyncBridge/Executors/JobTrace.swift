import Tracing

/// The submitting task's tracing context, carried to the thread that runs its job: the job runs
/// with it as `ServiceContext.current` (so spans its code starts nest under the caller's), and,
/// with a tracer, the time the job waited in the queue is a span of its own.
package struct JobTrace: Sendable {
    let context: ServiceContext
    /// With a tracer: the tracer that records the job's wait, and when the job was submitted.
    /// `nil` when no tracer is bootstrapped: the context still travels, nothing is recorded (and
    /// the clock is not read).
    let wait: (tracer: any Tracer, submitted: DefaultTracerClock.Instant)?

    /// The current task's context, or `nil` outside any traced work (then nothing is carried and
    /// nothing costs more than reading the task-local).
    package static func capture() -> JobTrace? {
        guard let context = ServiceContext.current else { return nil }
        guard !(InstrumentationSystem.instrument is NoOpInstrument) else {
            return JobTrace(context: context, wait: nil)
        }
        let tracer = InstrumentationSystem.tracer
        guard !(tracer is NoOpTracer) else { return JobTrace(context: context, wait: nil) }
        return JobTrace(context: context, wait: (tracer, DefaultTracerClock.now))
    }

    /// On the job's thread, when it picks the job up: records the wait, then runs `body` with the
    /// context.
    func run(on executor: String, kind: String, _ body: () -> Void) {
        recordWait(on: executor, kind: kind)
        ServiceContext.withValue(context, operation: body)
    }

    /// Records the wait from submission to now, when the thread `executor` (of `kind`) picks the
    /// work up.
    package func recordWait(on executor: String, kind: String) {
        guard let (tracer, submitted) = wait else { return }
        let span = tracer.startSpan("wait for thread", context: context, ofKind: .internal, at: submitted)
        span.attributes["syncbridge.executor.name"] = executor
        span.attributes["syncbridge.executor.kind"] = kind
        span.end(at: DefaultTracerClock.now)
    }
}
