import Foundation
import Testing

@testable import SyncBridge

/// Thrown by ``withDeadline(_:_:)`` when the operation is still running at the deadline.
struct DeadlineExceeded: Error, CustomStringConvertible {
    let seconds: Double
    var description: String { "still running after \(seconds) s: it hangs" }
}

/// Runs `operation` and fails with ``DeadlineExceeded`` if it has not finished within `seconds`.
/// The operation is cancelled then; an operation stuck in a blocking call is abandoned, so a
/// hang becomes a test failure instead of a stuck test run.
func withDeadline<T: Sendable>(
    _ seconds: Double = 10,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    // A guard against hangs, not for speed: longer under ThreadSanitizer.
    let seconds = seconds * Double(slowdown)
    let outcome = Shared<Result<T, any Error>?>(nil)
    let finished = AsyncStream<Void>.makeStream()
    let work = Task {
        let result: Result<T, any Error>
        do { result = .success(try await operation()) } catch { result = .failure(error) }
        outcome.withLock { $0 = $0 ?? result }
        finished.continuation.finish()
    }
    let timer = Task {
        try? await Task.sleep(for: .seconds(seconds))
        outcome.withLock { $0 = $0 ?? .failure(DeadlineExceeded(seconds: seconds)) }
        finished.continuation.finish()
    }
    for await _ in finished.stream {}
    timer.cancel()
    let result = outcome.withLock { $0! }
    if case .failure(let error) = result, error is DeadlineExceeded { work.cancel() }
    return try result.get()
}

/// Runs `body` on a new plain OS thread (not a cooperative one, not a SyncBridge one) and
/// returns its result.
func onPlainThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread {
            continuation.resume(returning: body())
        }
        thread.name = "test-plain"
        thread.start()
    }
}

/// A one-shot gate that blocking closures wait on, opened by the test.
final class Gate: Sendable {
    private let state = Locked(false)
    private let semaphore = DispatchSemaphore(value: 0)

    /// Blocks the calling (non-cooperative) thread until ``open()``.
    func wait() {
        if state.withLock({ $0 }) { return }
        semaphore.wait()
        semaphore.signal()  // let the next waiter through too
    }

    func open() {
        let wasOpen = state.withLock { open in
            defer { open = true }
            return open
        }
        if !wasOpen { semaphore.signal() }
    }
}

/// Polls `condition` until it holds, failing after `seconds`. For states that have no event to
/// await (a queue's depth); never a fixed sleep.
func waitUntil(
    _ description: String,
    seconds: Double = 10,
    _ condition: @escaping @Sendable () -> Bool
) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while !condition() {
        if ContinuousClock.now > deadline {
            Issue.record("condition not reached within \(seconds) s: \(description)")
            throw DeadlineExceeded(seconds: seconds)
        }
        await Task.yield()
        try await Task.sleep(for: .milliseconds(1))
    }
}

/// A thread-safe list of values in arrival order.
final class Recorder<Value: Sendable>: Sendable {
    private let values = Locked<[Value]>([])
    func append(_ value: Value) { values.withLock { $0.append(value) } }
    var all: [Value] { values.withLock { $0 } }
}

/// A value shared between threads and closures (a class, so closures capture a reference).
final class Shared<Value: Sendable>: Sendable {
    private let locked: Locked<Value>
    init(_ value: Value) { locked = Locked(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { locked.withLock { body(&$0) } }
    var value: Value { locked.current }
}

/// How much slower than normal this process runs: 10 under ThreadSanitizer (whose runtime is
/// loaded when `__tsan_init` resolves), 1 otherwise. Latency bounds are multiplied by it.
let slowdown: Int64 = dlsym(dlopen(nil, RTLD_NOW), "__tsan_init") != nil ? 10 : 1

/// For suites whose tests make SyncBridge refuse waits on purpose (waits on cooperative threads,
/// self-waits): each test runs in a report scope of its own, with a deadlock detector and a
/// watchdog that keep those reports away from the process-wide ones (`SYNCBRIDGE_DEADLOCK`,
/// `SYNCBRIDGE_WATCHDOG`) that check the rest of the suite.
struct RefusesOnPurposeTrait: TestTrait, SuiteTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        guard testCase != nil || !test.isSuite else { return try await function() }
        let scope = WatchdogScope.next()
        let detector = DeadlockDetector(configuration: .init(mode: .report), scope: scope)
        let watchdog = Watchdog(configuration: .init(bands: []), scope: scope)
        detector.start()
        watchdog.start()
        let result = await Result { try await WatchdogScope.$current.withValue(scope) { try await function() } }
        await detector.shutdown()
        await watchdog.shutdown()
        try result.get()
    }
}

extension Trait where Self == RefusesOnPurposeTrait {
    /// The suite's tests make SyncBridge refuse waits on purpose; see ``RefusesOnPurposeTrait``.
    static var refusesOnPurpose: Self { RefusesOnPurposeTrait() }
}

extension Result where Failure == any Error {
    /// The outcome of an async throwing body.
    init(_ body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
