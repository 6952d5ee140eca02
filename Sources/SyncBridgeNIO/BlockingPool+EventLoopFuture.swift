public import NIOCore
public import SyncBridge

extension BlockingPool {
    /// Runs a blocking closure on one of the pool's threads and returns its result as a future on
    /// `eventLoop`: for future-based code (a Vapor 4 route, a channel handler) that must call
    /// legacy blocking code without blocking its loop, and without being rewritten to async/await
    /// first. The counterpart of `NIOThreadPool.runIfActive(eventLoop:_:)`.
    ///
    /// ```swift
    /// app.get("stock", ":sku") { request -> EventLoopFuture<Int> in
    ///     let sku = request.parameters.get("sku")!
    ///     return legacyPool.runIfActive(eventLoop: request.eventLoop) {
    ///         try legacyInventory.available(sku: sku)   // blocking: runs on the pool
    ///     }
    /// }
    /// ```
    ///
    /// Called on `eventLoop`'s own thread, it also marks that thread as an event loop thread (see
    /// `EventLoopThreads`), so that a blocking call made there later is reported.
    ///
    /// - Parameters:
    ///   - eventLoop: The loop the future completes on.
    ///   - fileID: The call site, which snapshots show while the closure runs; leave the default.
    ///   - line: The call site, which snapshots show while the closure runs; leave the default.
    ///   - body: The blocking work.
    /// - Returns: A future that succeeds with what `body` returns, fails with what it throws, or
    ///   fails with `ExecutorError` (code `shutDown`) when the pool no longer accepts work.
    public func runIfActive<Value: Sendable>(
        eventLoop: any EventLoop,
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: @escaping @Sendable () throws -> Value
    ) -> EventLoopFuture<Value> {
        if eventLoop.inEventLoop { EventLoopThreads.markCurrentThreadAsLoop() }
        let promise = eventLoop.makePromise(of: Value.self)
        let accepted = runDetached(at: CallSite(fileID: fileID, line: line)) {
            promise.completeWith(Result { try body() })
        }
        if !accepted {
            promise.fail(shutDownError)
        }
        return promise.futureResult
    }
}
