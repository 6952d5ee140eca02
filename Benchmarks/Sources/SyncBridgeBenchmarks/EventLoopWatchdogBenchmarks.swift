import CBenchShims
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SyncBridge
import SyncBridgeNIO

/// Answers every HTTP request with a short body, keeping the connection open: the loaded loop the
/// event-loop watchdog's cost is measured on.
final class HelloHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "content-length", value: "5")
        let head = HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "hello")))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

/// The HTTP server's requests/s under `wrk` with and without a watchdog watching its event loops
/// (threshold 100 ms, the cooperative pool's bands off, so that only the loops' probes count), in
/// paired rounds; and the reports the watchdog made (target: none).
func eventLoopWatchdogBenchmarks(rounds: Int, seconds: Int) async throws -> (Comparison, reports: Int) {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let server = try await ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 256)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                try channel.pipeline.syncOperations.addHandler(HelloHandler())
            }
        }
        .bind(host: "127.0.0.1", port: 0)
        .get()
    let url = "http://127.0.0.1:\(server.localAddress!.port!)/"
    // The loop on the first CPU and wrk on the last, so that the scheduler's placement of the two
    // does not move whole rounds (without it, rounds of either contender spread over ±20 %).
    let cpus = ProcessInfo.processInfo.activeProcessorCount
    _ = try await group.next().submit { bench_pin_current_thread(0) }.get()
    let reports = ReportLog()

    func requestsPerSecond() async throws -> Double {
        let (status, output) = try await runProgram(
            "/usr/bin/taskset",
            ["-c", "\(cpus - 1)", "/usr/bin/wrk", "-t1", "-c32", "-d\(seconds)s", url]
        )
        guard status == 0,
            let line = output.split(separator: "\n").first(where: { $0.hasPrefix("Requests/sec:") }),
            let value = Double(line.split(separator: " ").last ?? "")
        else { throw BenchmarkError("wrk failed: \(output)") }
        return value
    }

    let comparison = try await compare(
        "HTTP server on one event loop (CPU 0), wrk -t1 -c32 (CPU \(cpus - 1)), \(seconds) s per round",
        unit: "requests/s",
        rounds: rounds,
        [
            Contender(name: "no watchdog") { try await requestsPerSecond() },
            Contender(name: "watchdog watching the loop (100 ms)") {
                let watchdog = Watchdog(
                    configuration: .init(
                        threshold: .milliseconds(100),
                        bands: [],
                        onReport: reports.record,
                        targets: group.watchdogTargets
                    )
                )
                watchdog.start()
                let figure = try await requestsPerSecond()
                await watchdog.shutdown()
                return figure
            },
        ]
    )
    try await server.close()
    try await group.shutdownGracefully()
    return (comparison, reports.all.count)
}
