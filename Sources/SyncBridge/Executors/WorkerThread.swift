import CSyncBridgeShims

/// The identity of one worker thread, reachable from the thread itself through a C
/// thread-local slot.
final class WorkerThread: Sendable {
    let group: WorkerThreads
    let index: Int
    let name: String

    init(group: WorkerThreads, index: Int, name: String) {
        self.group = group
        self.index = index
        self.name = name
    }

    /// The SyncBridge worker running the calling thread, if any.
    static var current: WorkerThread? {
        guard let pointer = sb_current_worker() else { return nil }
        return Unmanaged<WorkerThread>.fromOpaque(pointer).takeUnretainedValue()
    }
}
