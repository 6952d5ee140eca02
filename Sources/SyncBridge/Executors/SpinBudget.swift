import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Caps how many SyncBridge threads spin for work at once, process-wide, at half the CPUs
/// (at least one), so that idle executors never crowd out the threads doing real work.
enum SpinBudget {
    private static let limit = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)) / 2)
    private static let spinning = Atomic<Int>(0)

    /// Takes a spinning slot; `false` when all are taken.
    static func reserve() -> Bool {
        var current = spinning.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = spinning.compareExchange(
                expected: current,
                desired: current + 1,
                ordering: .relaxed
            )
            if exchanged { return true }
            current = original
        }
        return false
    }

    static func release() {
        spinning.subtract(1, ordering: .relaxed)
    }
}
