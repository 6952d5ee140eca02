import Foundation
import SyncBridge
import SyncBridgePostgres
import SyncBridgeTesting
import Tracing

/// What tracing's plumbing costs when no tracer is bootstrapped, set against the hop it rides on.
///
/// With no tracer, SyncBridge does three things tracing needs: each statement asks for the tracer
/// (`InstrumentationSystem.instrument is NoOpInstrument`, as `SQLTracing.tracer` does), each hop to
/// a thread reads the task's `ServiceContext` (`JobTrace.capture()`), and when the task has one,
/// the hop also asks for the tracer and binds the context on the thread for the job
/// (`JobTrace.run`). Each is timed here alone, in a loop of a million, with the same calls, and the
/// hop itself (`BlockingPool.run`) and a PostgreSQL `SELECT 1` from one task in the same rounds:
/// the ratios are what tracing adds to a hop and to a statement, precise where two builds timed
/// against each other are not (a hop's time swings by ±30 % between runs on a shared VM, a
/// wake-up's latency, not the code's).
func tracingCostBenchmarks(rounds: Int) async throws -> Comparison {
    let iterations = 1_000_000
    let hops = 20_000
    let pool = BlockingPool(name: "bench-trace", threadCount: 1)
    let counter = Counter()
    let sink = Counter()
    let server = try await TemporaryPostgres.start()
    var configuration = ConnectionPoolConfiguration()
    configuration.minimumConnections = 1
    configuration.maximumConnections = 1
    let client = PostgresClient(connectionString: server.connectionString, configuration: configuration)
    let run = Task { try await client.run() }
    _ = try await client.query("SELECT 1")

    @Sendable func nanosecondsPerIteration(_ body: () -> Void) -> Double {
        let start = now()
        body()
        return Double(now() - start) / Double(iterations)
    }

    let comparison = try await compare(
        "Tracing's plumbing with no tracer, each part alone (\(iterations) iterations), against a hop",
        unit: "ns per operation",
        rounds: rounds,
        [
            Contender(name: "read the task's ServiceContext (every hop)") {
                await Task.detached {
                    nanosecondsPerIteration {
                        for _ in 0..<iterations where ServiceContext.current != nil { sink.value &+= 1 }
                    }
                }.value
            },
            Contender(name: "ask for the tracer (every statement)") {
                await Task.detached {
                    nanosecondsPerIteration {
                        for _ in 0..<iterations where InstrumentationSystem.instrument is NoOpInstrument {
                            sink.value &+= 1
                        }
                    }
                }.value
            },
            Contender(name: "carry a context: read it, ask for the tracer (every hop in a context)") {
                await Task.detached {
                    ServiceContext.withValue(.topLevel) {
                        nanosecondsPerIteration {
                            for _ in 0..<iterations {
                                guard let context = ServiceContext.current else { continue }
                                if InstrumentationSystem.instrument is NoOpInstrument {
                                    withExtendedLifetime(context) { sink.value &+= 1 }
                                }
                            }
                        }
                    }
                }.value
            },
            Contender(name: "bind the context on the thread for the job (every hop in a context)") {
                await onDedicatedThread {
                    let context = ServiceContext.topLevel
                    return nanosecondsPerIteration {
                        for _ in 0..<iterations { ServiceContext.withValue(context) { sink.value &+= 1 } }
                    }
                }
            },
            Contender(name: "SyncBridge BlockingPool.run (the hop)") {
                try await Task.detached {
                    let start = now()
                    for _ in 0..<hops { try await pool.run { counter.value &+= 1 } }
                    return Double(now() - start) / Double(hops)
                }.value
            },
            Contender(name: "PostgreSQL SELECT 1, one task (the statement)") {
                try await Task.detached {
                    let start = now()
                    for _ in 0..<(hops / 4) { _ = try await client.query("SELECT 1") }
                    return Double(now() - start) / Double(hops / 4)
                }.value
            },
        ]
    )
    await pool.shutdownGracefully()
    run.cancel()
    _ = await run.result
    await server.stop()
    return comparison
}

/// Prints what the parts add up to for a hop and a statement, as a share of the hop.
func reportTracingCost(_ comparison: Comparison) {
    let read = comparison.median("read the task's ServiceContext (every hop)")
    let ask = comparison.median("ask for the tracer (every statement)")
    let carry = comparison.median(
        "carry a context: read it, ask for the tracer (every hop in a context)"
    )
    let bind = comparison.median("bind the context on the thread for the job (every hop in a context)")
    let hop = comparison.median("SyncBridge BlockingPool.run (the hop)")
    let statement = comparison.median("PostgreSQL SELECT 1, one task (the statement)")
    func share(_ nanoseconds: Double, of whole: Double, _ name: String) -> String {
        String(format: "%.1f ns, %.2f %% of ", nanoseconds, nanoseconds / whole * 100) + name
    }
    print("\nWhat tracing adds with no tracer (target: <= 2 % of the hop and of a statement):\n")
    print("- a hop, no context: \(share(read, of: hop, "a hop"))")
    print("- a hop in a request's context: \(share(carry + bind, of: hop, "a hop"))")
    print("- a statement, no context (one hop): \(share(read + ask, of: statement, "a statement"))")
    print("- a statement in a request's context (one hop): \(share(carry + bind + ask, of: statement, "a statement"))")
}
