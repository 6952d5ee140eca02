/// A component that contributes a part to ``SyncBridgeSnapshot/take()``: a connection pool or an
/// executor.
package protocol SnapshotSource: AnyObject, Sendable {
    /// The component's part, with durations measured up to `now` (monotonic nanoseconds).
    func snapshotPart(now: UInt64) -> SnapshotPart
}

/// What a ``SnapshotSource`` contributes.
package enum SnapshotPart: Sendable {
    case pool(SyncBridgeSnapshot.Pool)
    case executor(SyncBridgeSnapshot.Executor)
}

/// The components alive in the process, held weakly: a pool registers when it is created and
/// leaves when it is freed, an executor while its threads run.
package enum SnapshotRegistry {
    private struct Entry {
        weak var source: (any SnapshotSource)?
    }

    private static let entries = Locked<[ObjectIdentifier: Entry]>([:])

    /// Adds `source`; it stays until ``remove(_:)`` or until it is freed.
    package static func add(_ source: any SnapshotSource) {
        entries.withLock { $0[ObjectIdentifier(source)] = Entry(source: source) }
    }

    /// Removes `source` (from its `deinit` or when it stops).
    package static func remove(_ source: any SnapshotSource) {
        remove(ObjectIdentifier(source))
    }

    /// Removes the source with identifier `id` (from a `deinit`, where `self` can no longer be
    /// referenced weakly).
    package static func remove(_ id: ObjectIdentifier) {
        _ = entries.withLock { $0.removeValue(forKey: id) }
    }

    /// The sources still alive. Their parts are taken after the registry's lock is released, so
    /// that no component's lock is ever taken inside it.
    static var sources: [any SnapshotSource] {
        entries.withLock { entries in
            entries = entries.filter { $0.value.source != nil }
            return entries.values.compactMap(\.source)
        }
    }
}
