import DequeModule
import SyncBridge

/// One thread for the whole process that runs actions at deadlines: a statement's timeout (ask the
/// server to cancel it), and the grace period after which a statement the server never answered is
/// abandoned. Statements with a timeout each schedule one; scheduling and cancelling cost a lock
/// and a heap operation, and the thread is woken only when a new deadline is the earliest.
final class SQLDeadlines: Sendable {
    /// The process's deadlines.
    static let shared = SQLDeadlines()

    typealias Action = @Sendable () -> Void

    private struct Entry {
        let deadline: UInt64
        let id: UInt64
    }

    private struct State {
        /// A binary min-heap of deadlines.
        var heap: [Entry] = []
        /// The actions still wanted, by id; cancelled ones are gone from here and skipped.
        var actions: [UInt64: Action] = [:]
        var nextID: UInt64 = 0
        /// The deadline the thread sleeps until (`UInt64.max`: no deadline).
        var sleepingUntil: UInt64 = .max
        var started = false
    }

    private let condition = ConditionLock()
    private let state = Locked(State())
    private let thread = BlockingPool(name: "sb-sql-deadlines", threadCount: 1)

    private init() {}

    /// Runs `action` on the deadline thread at `deadline` (monotonic nanoseconds), unless
    /// ``cancel(_:)`` comes first. `action` must be quick and must not block.
    ///
    /// - Returns: What cancels it.
    func schedule(at deadline: UInt64, _ action: @escaping Action) -> UInt64 {
        let (id, wake, start) = state.withLock { state -> (UInt64, Bool, Bool) in
            state.nextID += 1
            state.actions[state.nextID] = action
            state.heap.append(Entry(deadline: deadline, id: state.nextID))
            Self.siftUp(&state.heap, from: state.heap.count - 1)
            let start = !state.started
            state.started = true
            return (state.nextID, deadline < state.sleepingUntil, start)
        }
        if start { startThread() }
        if wake { condition.withLock { condition.broadcast() } }
        return id
    }

    /// Forgets the action `id` (its entry leaves the heap when its deadline comes).
    func cancel(_ id: UInt64) {
        _ = state.withLock { $0.actions.removeValue(forKey: id) }
    }

    private func startThread() {
        let (condition, state) = (self.condition, self.state)
        thread.runDetached {
            while true {
                let now = monotonicNanoseconds()
                let (due, next) = state.withLock { state -> ([Action], UInt64) in
                    var due: [Action] = []
                    while let first = state.heap.first, first.deadline <= now {
                        Self.popFirst(&state.heap)
                        if let action = state.actions.removeValue(forKey: first.id) { due.append(action) }
                    }
                    // Cancelled entries at the top are dropped now rather than waking for them.
                    while let first = state.heap.first, state.actions[first.id] == nil { Self.popFirst(&state.heap) }
                    state.sleepingUntil = state.heap.first?.deadline ?? .max
                    return (due, state.sleepingUntil)
                }
                for action in due { action() }
                guard due.isEmpty else { continue }
                condition.lock()
                // A deadline scheduled before this lock was taken is seen here; one scheduled later
                // broadcasts once this thread waits (its scheduler takes this lock to do so).
                if (state.withLock { $0.heap.first?.deadline ?? .max }) >= next {
                    if next == .max {
                        condition.wait()
                    } else {
                        _ = condition.wait(untilMonotonicNanoseconds: next)
                    }
                }
                condition.unlock()
            }
        }
    }

    private static func siftUp(_ heap: inout [Entry], from index: Int) {
        var child = index
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { return }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private static func popFirst(_ heap: inout [Entry]) {
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].deadline < heap[smallest].deadline { smallest = left }
            if right < heap.count && heap[right].deadline < heap[smallest].deadline { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
