import CSyncBridgeShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A pthread mutex with one condition variable, the parking primitive of SyncBridge's threads.
///
/// `Synchronization.Mutex` has no condition variable, and the worker threads need to park and be
/// woken; this is the smallest wrapper that gives both.
package final class ConditionLock: @unchecked Sendable {
    // Safe to share: the pthread objects live at stable heap addresses for the object's whole
    // life and are only touched through the pthread functions, which are thread-safe by contract.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    package init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        let mutexResult = pthread_mutex_init(mutex, nil)
        precondition(mutexResult == 0, "pthread_mutex_init failed: \(mutexResult)")
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        let conditionResult = pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
        precondition(conditionResult == 0, "pthread_cond_init failed: \(conditionResult)")
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    package func lock() {
        let result = pthread_mutex_lock(mutex)
        precondition(result == 0, "pthread_mutex_lock failed: \(result)")
    }

    package func unlock() {
        let result = pthread_mutex_unlock(mutex)
        precondition(result == 0, "pthread_mutex_unlock failed: \(result)")
    }

    /// Runs `body` with the mutex held.
    @inline(__always)
    package func withLock<Result>(_ body: () throws -> Result) rethrows -> Result {
        lock()
        defer { unlock() }
        return try body()
    }

    /// Waits for a signal. The mutex must be held; it is held again on return.
    package func wait() {
        let result = pthread_cond_wait(condition, mutex)
        precondition(result == 0, "pthread_cond_wait failed: \(result)")
    }

    /// Waits for a signal or until `deadline` (CLOCK_MONOTONIC, nanoseconds). The mutex must be
    /// held. Returns `false` when the deadline passed.
    package func wait(untilMonotonicNanoseconds deadline: UInt64) -> Bool {
        var time = timespec(
            tv_sec: Int(deadline / 1_000_000_000),
            tv_nsec: Int(deadline % 1_000_000_000)
        )
        let result = pthread_cond_timedwait(condition, mutex, &time)
        precondition(result == 0 || result == ETIMEDOUT, "pthread_cond_timedwait failed: \(result)")
        return result == 0
    }

    /// Wakes one waiter.
    package func signal() {
        pthread_cond_signal(condition)
    }

    /// Wakes every waiter.
    package func broadcast() {
        pthread_cond_broadcast(condition)
    }
}

/// Nanoseconds on CLOCK_MONOTONIC: the clock of every SyncBridge timestamp and deadline.
@inline(__always)
package func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// Starts a detached OS thread named `name` (the kernel keeps 15 bytes) that runs `body`: the
/// watchdog's and the deadlock detector's own threads, which must never be cooperative ones.
func startDedicatedThread(named name: String, _ body: @escaping @Sendable () -> Void) {
    final class Start: Sendable {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }
    let context = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
    var handle = pthread_t()
    let result = sb_thread_create(
        &handle,
        { context in
            let start = Unmanaged<Start>.fromOpaque(context!).takeRetainedValue()
            _ = sb_set_current_thread_name(start.name)
            start.body()
            return nil
        },
        context,
        0
    )
    precondition(result == 0, "\(name): pthread_create failed with \(result)")
    pthread_detach(handle)
}
