import Foundation
import PostgresNIO
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting

/// `SELECT 1` against a PostgreSQL server made `roundTrip` away by a ``LatencyProxy`` (half of it
/// each way), on 8 connections: one statement per call from 64 tasks (SyncBridge and
/// PostgresNIO; SyncBridge also on I/O threads, which pipeline the statements that queue on a
/// connection), and SyncBridge's explicit pipelines of 100 statements from 8 tasks. Statements
/// per second.
func latencyBenchmarks(rounds: Int, seconds: Double, roundTrip: Duration) async throws -> Comparison {
    let server = try await TemporaryPostgres.start()
    let proxy = try LatencyProxy(forwardingTo: server.port, delay: roundTrip / 2)
    let far =
        "host=127.0.0.1 port=\(proxy.port) dbname=\(server.database) user=\(server.user) password=\(server.password)"

    var configuration = ConnectionPoolConfiguration()
    configuration.minimumConnections = 8
    configuration.maximumConnections = 8
    let ours = SyncBridgePostgres.PostgresClient(
        connectionString: far,
        configuration: configuration,
        ioThreads: .off,
        name: "far"
    )
    let oursRun = Task { try await ours.run() }
    let pipelining = SyncBridgePostgres.PostgresClient(
        connectionString: far,
        configuration: configuration,
        ioThreads: SQLIOThreads(count: 2, name: "sb-io-far"),
        name: "far-io"
    )
    let pipeliningRun = Task { try await pipelining.run() }
    let nio = makeNIOClient(server, port: proxy.port)
    let nioRun = Task { await nio.run() }

    let comparison = try await compare(
        "PostgreSQL SELECT 1, \(roundTrip) round trip through a latency proxy: statements per second (8 connections; \(seconds) s per round)",
        unit: "statements/s",
        rounds: rounds,
        [
            Contender(name: "SyncBridge, a thread per connection, one statement per call, 64 tasks") {
                try await queriesPerSecond(tasks: 64, seconds: seconds) {
                    let value = try await ours.query("SELECT 1")[0].decode(Int.self, at: 0)
                    precondition(value == 1)
                }
            },
            Contender(name: "SyncBridge on I/O threads (automatic pipelining), one statement per call, 64 tasks") {
                try await queriesPerSecond(tasks: 64, seconds: seconds) {
                    let value = try await pipelining.query("SELECT 1")[0].decode(Int.self, at: 0)
                    precondition(value == 1)
                }
            },
            Contender(name: "PostgresNIO query(), 64 tasks") {
                try await queriesPerSecond(tasks: 64, seconds: seconds) {
                    for try await value in try await nio.query("SELECT 1").decode(Int.self) { precondition(value == 1) }
                }
            },
            pipelinedSelectOnes(ours, seconds: seconds),
        ]
    )
    oursRun.cancel()
    pipeliningRun.cancel()
    nioRun.cancel()
    _ = await oursRun.result
    _ = await pipeliningRun.result
    _ = await nioRun.result
    proxy.stop()
    await server.stop()
    return comparison
}
