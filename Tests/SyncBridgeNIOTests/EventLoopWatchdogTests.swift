import Foundation
import NIOCore
import NIOPosix
import SharedTestSupport
import SyncBridge
import SyncBridgeNIO
import SyncBridgePostgres
import SyncBridgeTemporaryServers
import SyncBridgeTesting
import Testing

/// Blocks the calling thread in `usleep` for `milliseconds`, as a legacy synchronous lookup
/// would; sleeps again after a stack sample's signal cuts a sleep short.
@inline(never)
func legacyBlockingLookup(milliseconds: Int) {
    let end = ContinuousClock.now + .milliseconds(milliseconds)
    while ContinuousClock.now < end {
        _ = usleep(UInt32(max(1, (end - ContinuousClock.now).microsecondCount)))
    }
}

/// Echoes what it reads; before each echo, blocks its loop for `blockMilliseconds` (0: never).
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let blockMilliseconds: Int

    init(blockMilliseconds: Int) {
        self.blockMilliseconds = blockMilliseconds
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if blockMilliseconds > 0 { legacyBlockingLookup(milliseconds: blockMilliseconds) }
        context.writeAndFlush(data, promise: nil)
    }
}

/// A plain NIO TCP echo server on its own one-loop group, and a client group beside it.
struct EchoServer {
    let group: MultiThreadedEventLoopGroup
    let clientGroup: MultiThreadedEventLoopGroup
    let channel: any Channel

    static func start(blockMilliseconds: Int = 0) async throws -> EchoServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(EchoHandler(blockMilliseconds: blockMilliseconds))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return EchoServer(group: group, clientGroup: clientGroup, channel: channel)
    }

    /// Sends `message` on a new connection and returns the echo.
    func roundTrips(_ count: Int, message: String = "ping") async throws -> Int {
        let port = try #require(channel.localAddress?.port)
        let client = try await ClientBootstrap(group: clientGroup)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await client.executeThenClose { inbound, outbound in
            var echoed = 0
            var iterator = inbound.makeAsyncIterator()
            for _ in 0..<count {
                try await outbound.write(ByteBuffer(string: message))
                var received = 0
                while received < message.utf8.count, let chunk = try await iterator.next() {
                    received += chunk.readableBytes
                }
                if received == message.utf8.count { echoed += 1 }
            }
            return echoed
        }
    }

    /// The name of the server loop's thread.
    func loopThreadName() async throws -> String {
        try await group.next().submit { ThreadIdentity.current.name }.get()
    }

    func shutdown() async throws {
        try await channel.close()
        try await group.shutdownGracefully()
        try await clientGroup.shutdownGracefully()
    }
}

/// Collects a watchdog's reports, with when each arrived.
final class Reports: Sendable {
    private let reports = Shared<[(report: WatchdogReport, at: ContinuousClock.Instant)]>([])

    /// The loops whose blocking calls belong to the test; other blocking calls of the process
    /// reach every watchdog and are left out.
    let loops: Shared<Set<String>> = Shared([])

    func record(_ report: WatchdogReport) {
        if report.kind == .blockingCall, !(report.eventLoop.map { loops.value.contains($0) } ?? false) { return }
        reports.withLock { $0.append((report, .now)) }
    }

    var all: [WatchdogReport] { reports.value.map(\.report) }

    func first(where match: (WatchdogReport) -> Bool) -> (report: WatchdogReport, at: ContinuousClock.Instant)? {
        reports.value.first { match($0.report) }
    }
}

/// The symbol names of `stack`'s frames, from `llvm-symbolizer` (the toolchain's), run on a
/// thread of its own.
func symbolize(_ stack: ThreadStack) async throws -> [String] {
    let pool = BlockingPool(name: "sb-symbolize", threadCount: 1)
    defer { Task { await pool.shutdownGracefully() } }
    return try await pool.run {
        // One run per image, with all of its addresses; each answer is a block of lines (the
        // function's name first) followed by an empty line.
        var names: [String] = []
        let images = Dictionary(grouping: stack.frames.filter { $0.image != nil && $0.imageOffset != nil }) {
            $0.image!
        }
        for (image, frames) in images {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments =
                ["llvm-symbolizer", "--obj=\(image)"] + frames.map { "0x\(String($0.imageOffset!, radix: 16))" }
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            let blocks = String(decoding: data, as: UTF8.self).components(separatedBy: "\n\n")
            names += blocks.compactMap { $0.split(separator: "\n").first.map(String.init) }
        }
        return names
    }
}

/// Runs `body` with a watchdog that watches `group`'s loops (and no band of the cooperative
/// pool), in the turn the stall tests of the process take one at a time.
func withLoopWatchdog(
    _ group: any EventLoopGroup,
    threshold: Duration,
    _ body: @Sendable (Reports) async throws -> Void
) async throws {
    let reports = Reports()
    for loop in group.makeIterator() {
        let name = try await loop.submit { ThreadIdentity.current.name }.get()
        reports.loops.withLock { _ = $0.insert(name) }
    }
    try await WatchdogScope.exclusively {
        let watchdog = Watchdog(
            configuration: .init(
                threshold: threshold,
                bands: [],
                onReport: reports.record,
                targets: group.watchdogTargets
            )
        )
        watchdog.start()
        do {
            try await body(reports)
        } catch {
            await watchdog.shutdown()
            throw error
        }
        await watchdog.shutdown()
    }
}

@Suite("Event loops watched like the cooperative pool")
struct EventLoopWatchdogTests {
    @Test(
        "a handler that blocks its loop for 300 ms is reported with the loop's name and the blocking frames; the end with the total",
        .enabled(if: slowdown == 1, "waits for a stall report: runs in the passes without ThreadSanitizer")
    )
    func blockedLoopIsReported() async throws {
        let server = try await EchoServer.start(blockMilliseconds: 300)
        let loopName = try await server.loopThreadName()
        try await withLoopWatchdog(server.group, threshold: .milliseconds(100)) { reports in
            #expect(try await server.roundTrips(1) == 1)
            try await waitUntil { reports.first { $0.kind == .stall && !$0.isOngoing } != nil }
            let stall = try #require(reports.first { $0.kind == .stall && $0.isOngoing }).report
            #expect(stall.eventLoop == loopName)
            #expect(stall.band == nil)
            #expect(stall.headline.hasPrefix("event loop \(loopName) ran no task for"), "\(stall.headline)")
            #expect(stall.stacks.count == 1)
            #expect(stall.stacks.first?.name == loopName)
            #expect(stall.containsFrame("sleep"), "\(stall)")
            // The test binary exports no Swift symbols: its frames are named offline, as the
            // report suggests (`llvm-symbolizer --obj=IMAGE OFFSET`).
            let names = try await symbolize(stall.stacks[0])
            #expect(names.contains { $0.contains("legacyBlockingLookup") }, "\(names)")
            // (Swift's mangled names: `…11EchoHandlerC11channelRead…`.)
            #expect(names.contains { $0.contains("EchoHandler") && $0.contains("channelRead") }, "\(names)")
            #expect(names.contains { $0.contains("SelectableEventLoop") }, "\(names)")
            let end = try #require(reports.first { $0.kind == .stall && !$0.isOngoing }).report
            #expect(end.eventLoop == loopName)
            #expect(end.duration >= .milliseconds(200), "total \(end.duration)")
            #expect(reports.all.count == 2, "\(reports.all)")
        }
        try await server.shutdown()
    }

    @Test(
        "Solo: a blocked loop is reported within threshold + 20 ms",
        .enabled(if: ProcessInfo.processInfo.environment["SYNCBRIDGE_SOLO_TESTS"] == "1", "runs in the solo pass"),
        .enabled(if: slowdown == 1, "a latency bound: runs in the passes without ThreadSanitizer")
    )
    func testSoloBlockedLoopLatency() async throws {
        let server = try await EchoServer.start()
        let threshold = Duration.milliseconds(50)
        let best = Shared(Duration.seconds(3600))
        // The best of five trials (the machine is shared); every trial must report the stall.
        for _ in 0..<5 where best.value > .milliseconds(20) {
            try await withLoopWatchdog(server.group, threshold: threshold) { reports in
                // Let the watchdog learn the loop's thread from a first probe.
                try await Task.sleep(for: .milliseconds(100))
                let started = try await server.group.next().submit { ContinuousClock.now }.get()
                try await server.group.next().submit { legacyBlockingLookup(milliseconds: 200) }.get()
                try await waitUntil { reports.first { $0.kind == .stall && $0.isOngoing } != nil }
                let reportedAt = try #require(reports.first { $0.kind == .stall && $0.isOngoing }).at
                best.withLock { $0 = min($0, reportedAt - started - threshold) }
            }
        }
        #expect(best.value <= .milliseconds(20), "reported \(best.value) after the threshold")
        try await server.shutdown()
    }

    @Test("an echo load of several seconds on a watched loop gives no report")
    func healthyLoadIsNotReported() async throws {
        let server = try await EchoServer.start()
        try await withLoopWatchdog(server.group, threshold: .milliseconds(100 * slowdown)) { reports in
            let deadline = ContinuousClock.now + .seconds(3)
            let echoed = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        // At least one batch each: under ThreadSanitizer beside the whole suite,
                        // the tasks can start after the deadline.
                        var echoed = 0
                        repeat { echoed += try await server.roundTrips(50) } while ContinuousClock.now < deadline
                        return echoed
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(echoed >= 200, "the load ran: \(echoed) echoes")
            #expect(reports.all.isEmpty, "\(reports.all)")
        }
        try await server.shutdown()
    }

    @Test("Blocking.call on a marked loop thread is reported and refused under throwError, naming the loop")
    func blockingCallOnLoop() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        EventLoopThreads.mark(group)
        let loop = group.next()
        let loopName = try await loop.submit { ThreadIdentity.current.name }.get()
        #expect(try await loop.submit { EventLoopThreads.currentName }.get() == loopName)
        let collected = try await WatchdogTrait.collectReports(
            threshold: .seconds(10),
            timesEveryJob: false,
            eventLoops: group.watchdogTargets
        ) {
            let outcome = try await loop.submit { () -> Result<Int, BlockingCallError> in
                Result { try Blocking.call("legacyLookup", policy: .throwError) { 42 } }
                    .mapError { $0 as! BlockingCallError }
            }.get()
            guard case .failure(let error) = outcome else {
                Issue.record("the call ran on the loop: \(outcome)")
                return
            }
            #expect(error.operation == "legacyLookup")
            #expect(error.eventLoop == loopName)
            #expect(error.description.contains("would block event loop \(loopName)"), "\(error)")
        }
        let report = try #require(collected.first { $0.kind == .blockingCall })
        #expect(report.operation == "legacyLookup")
        #expect(report.eventLoop == loopName)
        #expect(report.headline.contains("on event loop \(loopName)"), "\(report.headline)")
        #expect(collected.count == 1, "\(collected)")
        try await group.shutdownGracefully()
    }

    @Test("waitForAsync on a loop thread is refused at once, with the loop's name in the reason")
    func guardedWaitOnLoopIsRefused() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        EventLoopThreads.mark(group)
        let loop = group.next()
        let outcome = try await loop.submit { () -> GuardedWaitError? in
            do {
                _ = try waitForAsync(timeout: .seconds(5)) { 1 }
                return nil
            } catch {
                return error as? GuardedWaitError
            }
        }.get()
        let error = try #require(outcome)
        #expect(error.reason.isEventLoopThread)
        #expect(error.reason != .cooperativeThread)
        let loopName = try await loop.submit { ThreadIdentity.current.name }.get()
        #expect(error.description.contains("event loop \(loopName)"), "\(error)")
        // Unmarked, the same wait goes ahead.
        let unmarked = try await loop.submit { () -> Int in
            EventLoopThreads.unmarkCurrentThread()
            return try waitForAsync(timeout: .seconds(5)) { 2 }
        }.get()
        #expect(unmarked == 2)
        try await group.shutdownGracefully()
    }

    @Test(
        "runIfActive runs blocking work on the pool and completes on the caller's loop; the watched loop never stalls"
    )
    func offloadedWorkKeepsTheLoopFree() async throws {
        let server = try await EchoServer.start()
        let pool = BlockingPool(name: "sb-offload", threadCount: 4)
        let loop = server.group.next()
        try await withLoopWatchdog(server.group, threshold: .milliseconds(100 * slowdown)) { reports in
            // Eight lookups of 150 ms each, started from the loop: the loop goes on serving.
            let futures = try await loop.submit { () -> [EventLoopFuture<String>] in
                (0..<8).map { index in
                    pool.runIfActive(eventLoop: loop) {
                        legacyBlockingLookup(milliseconds: 150)
                        return "\(index) on \(ThreadIdentity.current.name)"
                    }
                }
            }.get()
            let echoed = try await server.roundTrips(20)
            var results: [String] = []
            for future in futures {
                #expect(future.eventLoop === loop)
                results.append(try await future.get())
            }
            #expect(echoed == 20)
            #expect(results.count == 8)
            #expect(results.allSatisfy { $0.contains(" on sb-offload") }, "\(results)")
            #expect(Set(results.map { $0.split(separator: " ")[0] }) == Set((0..<8).map { "\($0)" }))
            #expect(reports.all.isEmpty, "\(reports.all)")
            // The loop's thread was marked by the first call made on it.
            #expect(try await loop.submit { EventLoopThreads.currentName }.get() != nil)
        }
        await pool.shutdownGracefully()
        // A pool that is shut down fails the future instead of running the work.
        let refused = pool.runIfActive(eventLoop: loop) { 1 }
        await #expect(throws: ExecutorError.self) { try await refused.get() }
        try await server.shutdown()
    }

    @Test("a test under the watchdog trait with event loops records a blocked loop and a blocking call on it")
    func traitWatchesLoops() async throws {
        let server = try await EchoServer.start()
        let loop = server.group.next()
        let loopName = try await server.loopThreadName()
        let reports = try await WatchdogScope.exclusively {
            try await WatchdogTrait.collectReports(
                threshold: .milliseconds(100),
                timesEveryJob: false,
                eventLoops: server.group.watchdogTargets
            ) {
                try await Task.sleep(for: .milliseconds(50))
                try await loop.submit {
                    _ = try? Blocking.call("legacyLookup") { legacyBlockingLookup(milliseconds: 400 * Int(slowdown)) }
                }.get()
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let call = try #require(reports.first { $0.kind == .blockingCall })
        #expect(call.eventLoop == loopName)
        if slowdown == 1 {
            let stall = try #require(reports.first { $0.kind == .stall && $0.eventLoop != nil }, "\(reports)")
            #expect(stall.eventLoop == loopName)
        }
        try await server.shutdown()
    }
}

@Suite("Database facades from future-based code")
struct FutureBasedFacadeTests {
    @Test("a query from a future chain runs on the pool's connection thread; the loop stays watched and free")
    func queryFromFutureChain() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = PostgresClient(connectionString: server.connectionString + " application_name=sb-nio-future")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        // The loop alone is watched: beside the whole suite, the cooperative pool's bands stall
        // for other tests' reasons.
        try await withLoopWatchdog(group, threshold: .milliseconds(100 * slowdown)) { reports in
            // A legacy future chain: the statement runs on a connection thread, the chain goes on
            // on the loop.
            let future = try await loop.submit { () -> EventLoopFuture<Int> in
                loop.makeFutureWithTask {
                    try await client.query("SELECT 41 + 1, pg_sleep(0.2)")[0].decode(Int.self, at: 0)
                }
                .map { $0 + 0 }
            }.get()
            #expect(future.eventLoop === loop)
            #expect(try await future.get() == 42)
            #expect(reports.all.isEmpty, "\(reports.all)")
        }
        await client.shutdown()
        try await group.shutdownGracefully()
    }
}
