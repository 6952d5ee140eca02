import Foundation
import Testing

@testable import SyncBridge

@Suite("Live snapshot: executors, watchdogs, the wait-for graph")
struct SnapshotTests {
    static let file = "SyncBridgeTests/SnapshotTests.swift"

    @Test("a BlockingPool's thread shows the closure it runs with its call site, and the work queued behind it")
    func executorThreads() async throws {
        let name = "sb-snap-\(UInt16.random(in: 0...UInt16.max))"
        let pool = BlockingPool(name: name, threadCount: 1)
        let release = DispatchSemaphore(value: 0)
        let runLine = #line + 1
        let first = Task { try await pool.run { release.wait() } }
        try await waitUntil("the first closure runs") {
            SyncBridgeSnapshot.take().executors.first { $0.name == name }?.threads.first?.job != nil
        }
        let second = Task { try await pool.run { 2 } }
        try await waitUntil("the second closure is queued") {
            SyncBridgeSnapshot.take().executors.first { $0.name == name }?.queued == 1
        }
        let executor = try #require(SyncBridgeSnapshot.take().executors.first { $0.name == name })
        #expect(executor.kind == "BlockingPool")
        #expect(executor.queueCapacity != nil)
        #expect(!executor.isShutDown)
        let thread = try #require(executor.threads.first)
        #expect(executor.threads.count == 1)
        #expect(thread.name == "\(name)-0")
        let job = try #require(thread.job)
        #expect(job.kind == "closure")
        #expect(job.callSite == "\(Self.file):\(runLine)")
        #expect(job.detail == nil)
        #expect(job.runningForSeconds >= 0)
        #expect(job.queuedForSeconds != nil)

        release.signal()
        try await first.value
        #expect(try await second.value == 2)
        await pool.shutdownGracefully()
        #expect(SyncBridgeSnapshot.take().executors.first { $0.name == name } == nil)
    }

    @Test("a running watchdog's bands and the deadlock detector's waits, with the holder's call site")
    func watchdogAndWaitForGraph() async throws {
        let watchdog = Watchdog(configuration: .init(threshold: .seconds(5)), scope: WatchdogScope.next())
        watchdog.start()
        try await waitUntil("every band was probed") {
            SyncBridgeSnapshot.take().watchdogs.contains { view in
                view.thresholdSeconds == 5 && view.bands.count == 3
                    && view.bands.allSatisfy { $0.lastProbeSecondsAgo != nil }
            }
        }
        let view = try #require(SyncBridgeSnapshot.take().watchdogs.first { $0.thresholdSeconds == 5 })
        #expect(view.bands.map(\.name) == ["userInitiated", "default", "utility"])
        #expect(view.bands.allSatisfy { $0.stalledForSeconds == nil })
        await watchdog.shutdown()

        let mutex = AsyncMutex(0, lockClass: "snapshot-ledger-\(UInt16.random(in: 0...UInt16.max))")
        let (holding, release) = (AsyncStream<Void>.makeStream(), AsyncStream<Void>.makeStream())
        _ = try await withDeadlockReports(mode: .report) {
            let holdLine = #line + 2
            let holder = Task {
                try await mutex.withLock { _ in
                    holding.continuation.finish()
                    for await _ in release.stream {}
                }
            }
            for await _ in holding.stream {}
            let waitLine = #line + 1
            let waiter = Task { try await mutex.withLock { $0 += 1 } }
            try await waitUntil("the waiter is in the wait-for graph") {
                SyncBridgeSnapshot.take().waitForGraph?.waits.contains { $0.callSite == "\(Self.file):\(waitLine)" }
                    ?? false
            }
            let graph = try #require(SyncBridgeSnapshot.take().waitForGraph)
            let wait = try #require(graph.waits.first { $0.callSite == "\(Self.file):\(waitLine)" })
            #expect(wait.resource.contains("AsyncMutex"))
            #expect(wait.holders.map(\.callSite) == ["\(Self.file):\(holdLine)"])
            #expect(wait.waitingForSeconds >= 0)
            release.continuation.finish()
            try await holder.value
            try await waiter.value
        }
    }
}
