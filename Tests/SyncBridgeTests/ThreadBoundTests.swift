import Testing

@testable import SyncBridge

/// Stands in for a thread-affine C handle: it remembers the thread that created it and counts
/// the uses that happened on any other thread.
final class AffineHandle {
    let ownerTid = ThreadIdentity.current.tid
    var uses = 0
    var foreignUses = 0

    func use() -> Int {
        if ThreadIdentity.current.tid != ownerTid { foreignUses += 1 }
        uses += 1
        return uses
    }
}

@Suite("ThreadBound")
struct ThreadBoundTests {
    @Test("the resource is created, used and closed on the executor's thread only")
    func affinity() async throws {
        let executor = ThreadExecutor(name: "sb-bound")
        let bound = try await ThreadBound(on: executor) { AffineHandle() }
        let uses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<500 {
                group.addTask { try await bound.withResource { $0.use() } }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(uses.sorted() == Array(1...500))
        let (foreign, tid, executorTid) = try await bound.withResource { handle, _ in
            (handle.foreignUses, handle.ownerTid, ThreadIdentity.current.tid)
        }
        #expect(foreign == 0)
        #expect(tid == executorTid)

        let closedOn = Recorder<String>()
        try await bound.close { _ in closedOn.append(ThreadIdentity.current.name) }
        #expect(closedOn.all == ["sb-bound"])
        let error = await #expect(throws: ExecutorError.self) { try await bound.withResource { $0.use() } }
        #expect(error?.code == .resourceClosed)
        try await bound.close { _ in closedOn.append("twice") }
        #expect(closedOn.all == ["sb-bound"])
        await executor.shutdownGracefully()
    }

    @Test("an error thrown by open reaches the caller")
    func openFails() async throws {
        struct OpenFailed: Error {}
        let executor = ThreadExecutor(name: "sb-bound-err")
        await #expect(throws: OpenFailed.self) {
            _ = try await ThreadBound<AffineHandle>(on: executor) { throw OpenFailed() }
        }
        await executor.shutdownGracefully()
    }
}
