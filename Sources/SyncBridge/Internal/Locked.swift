/// A value guarded by a pthread mutex.
///
/// SyncBridge uses this rather than `Synchronization.Mutex` for state shared between threads:
/// on Linux, `Mutex` locks with futex operations compiled outside the caller's module, which
/// ThreadSanitizer cannot see, so every access it guards is reported as a race. pthread mutexes
/// are intercepted by ThreadSanitizer, so users' `--sanitize=thread` runs stay clean.
package final class Locked<Value>: @unchecked Sendable {
    // Safe to share: `value` is only reached through `withLock`, which holds `lock`. Both are
    // visible to `withLock`'s inlined body only, so that callers in other modules specialise it
    // (an unspecialised generic call would look up its result type's metadata at run time, on
    // every statement's hot path).
    @usableFromInline let lock = ConditionLock()
    @usableFromInline var value: Value

    package init(_ value: Value) {
        self.value = value
    }

    /// Runs `body` with exclusive access to the value.
    @inlinable
    package func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

extension Locked where Value: Sendable {
    /// A copy of the current value.
    @inlinable
    package var current: Value {
        withLock { $0 }
    }
}
