/// A non-`Sendable` resource — typically a C handle such as a `PGconn*` or `MYSQL*` — that lives
/// on one ``ThreadExecutor`` thread and is only ever touched there.
///
/// The resource is created on the executor's thread, every closure that uses it runs on that
/// thread in submission order, and it is closed there. No code on any other thread can reach it,
/// which is what thread-affine C libraries require.
///
/// ```swift
/// let executor = ThreadExecutor(name: "pg-legacy")
/// let connection = try await ThreadBound(on: executor) {
///     PQconnectdb(conninfo)
/// }
/// let version = try await connection.withResource { conn in
///     LegacyDB.serverVersion(conn)   // existing synchronous code, unchanged
/// }
/// try await connection.close { conn in PQfinish(conn) }
/// ```
public final class ThreadBound<Resource>: Sendable {
    /// The executor whose thread owns the resource.
    public let executor: ThreadExecutor
    private let storage: Storage

    /// Holds the resource; only the executor's thread touches `resource`.
    private final class Storage: @unchecked Sendable {
        // Safe to share: `resource` is read and written only inside closures that
        // `ThreadBound` submits to `executor`, which runs them one at a time on its one thread
        // (checked by `precondition(executor.isCurrent)` at each access). The one exception,
        // `init(on:adopting:)`, writes it before the `ThreadBound` exists for anyone else; the
        // executor's queue lock orders that write before every job.
        var resource: Resource?
    }

    /// Creates the resource on `executor`'s thread.
    ///
    /// - Parameters:
    ///   - executor: Owns the resource from now on.
    ///   - open: Creates the resource; runs on the executor's thread.
    /// - Throws: What `open` throws; ``ExecutorError`` if the executor is shut down;
    ///   `CancellationError` if the task was cancelled first.
    public init(
        on executor: ThreadExecutor,
        _ open: sending @escaping () throws -> Resource
    ) async throws {
        self.executor = executor
        let storage = Storage()
        self.storage = storage
        try await executor.run {
            precondition(executor.isCurrent)
            storage.resource = try open()
        }
    }

    /// Hands `resource`, made elsewhere, to `executor`'s thread: from now on only that thread
    /// touches it. For resources that need no setup on the thread (an empty table of handles),
    /// so that synchronous code can create the `ThreadBound`.
    package init(on executor: ThreadExecutor, adopting resource: sending Resource) {
        self.executor = executor
        let storage = Storage()
        storage.resource = resource
        self.storage = storage
    }

    /// Runs `body` with the resource on the executor's thread and returns its result.
    ///
    /// - Parameters:
    ///   - fileID: The call site, which snapshots show while `body` runs; leave the default.
    ///   - line: The call site, which snapshots show while `body` runs; leave the default.
    ///   - body: Synchronous code that uses the resource; it may block. It must not let the
    ///     resource escape.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws; ``ExecutorError`` with code
    ///   ``ExecutorError/Code/resourceClosed`` after ``close(_:)``, or
    ///   ``ExecutorError/Code/shutDown``; `CancellationError` if the task was cancelled before
    ///   `body` started.
    public func withResource<Success>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: sending @escaping (inout Resource) throws -> Success
    ) async throws -> Success {
        try await withResource(at: CallSite(fileID: fileID, line: line), detail: nil) { resource, _ in
            try body(&resource)
        }
    }

    /// Runs `body` with the resource and a ``BlockingJobContext`` (cancellation, interrupt
    /// handlers) on the executor's thread.
    ///
    /// - Parameters:
    ///   - fileID: The call site, which snapshots show while `body` runs; leave the default.
    ///   - line: The call site, which snapshots show while `body` runs; leave the default.
    ///   - body: Synchronous code that uses the resource.
    /// - Returns: What `body` returns.
    /// - Throws: As ``withResource(fileID:line:_:)-(_,_,(Resource)->Success)``.
    public func withResource<Success>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: sending @escaping (inout Resource, BlockingJobContext) throws -> Success
    ) async throws -> Success {
        try await withResource(at: CallSite(fileID: fileID, line: line), detail: nil, body)
    }

    /// ``withResource(fileID:line:_:)-(_,_,(Resource,BlockingJobContext)->Success)`` with the
    /// work described for snapshots: where it was asked for, and what it is. The work acts for
    /// `origin`'s task (the caller's, unless it took its origin before waiting elsewhere).
    package func withResource<Success>(
        actingFor origin: JobOrigin = .current(),
        at site: CallSite?,
        detail: (any CustomStringConvertible & Sendable)?,
        _ body: sending @escaping (inout Resource, BlockingJobContext) throws -> Success
    ) async throws -> Success {
        let storage = self.storage
        let executor = self.executor
        return try await executor.workers.submit(actingFor: origin, at: site, detail: detail) { context in
            precondition(executor.isCurrent)
            guard var resource = storage.resource else {
                throw ExecutorError(code: .resourceClosed, executorName: executor.name, kind: .threadExecutor)
            }
            storage.resource = nil
            defer { storage.resource = resource }
            return try body(&resource, context)
        }
    }

    /// Queues `body` on the executor's thread without waiting: it runs after every closure
    /// submitted before this call and before every closure submitted after it, which makes it
    /// the tool for clean-up that must happen from synchronous code (a `deinit`). When the
    /// resource is closed or the executor shut down, `ifClosed` runs instead. With an `origin`
    /// (``JobOrigin/current()`` of the task the work is for), the work acts for that task.
    package func withResourceDetached(
        actingFor origin: JobOrigin? = nil,
        at site: CallSite? = nil,
        detail: (any CustomStringConvertible & Sendable)? = nil,
        _ body: sending @escaping (inout Resource) -> Void,
        ifClosed: @escaping @Sendable () -> Void
    ) {
        let storage = self.storage
        let executor = self.executor
        let queued = executor.workers.submitDetached(actingFor: origin, at: site, detail: detail) {
            _ in
            precondition(executor.isCurrent)
            guard var resource = storage.resource else {
                ifClosed()
                return
            }
            storage.resource = nil
            defer { storage.resource = resource }
            body(&resource)
        }
        if !queued { ifClosed() }
    }

    /// Closes the resource on the executor's thread with `close`, after every closure queued
    /// before. Later calls of ``withResource(fileID:line:_:)-(_,_,(Resource)->Success)`` throw
    /// ``ExecutorError/Code/resourceClosed``; closing twice does nothing the second time.
    ///
    /// The executor itself stays up: shut it down separately when nothing else uses it.
    public func close(_ close: sending @escaping (consuming Resource) -> Void) async throws {
        let storage = self.storage
        let executor = self.executor
        try await executor.run {
            precondition(executor.isCurrent)
            guard let resource = storage.resource else { return }
            storage.resource = nil
            close(resource)
        }
    }
}
