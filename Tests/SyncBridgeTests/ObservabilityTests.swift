import InMemoryLogging
import Logging
import Metrics
import MetricsTestKit
import Testing

@testable import SyncBridge

@Suite("Metrics and logs")
struct ObservabilityTests {
    @Test("a pool records queue depth, wait and run times per job, and refusals after shutdown")
    func poolMetrics() async throws {
        let metrics = TestMetrics()
        let pool = BlockingPool(name: "sb-metrics", threadCount: 1, metricsFactory: metrics)
        for value in 1...3 {
            #expect(try await pool.run { value } == value)
        }
        let dimensions = [("executor", "sb-metrics"), ("kind", "BlockingPool")]
        let waits = try metrics.expectTimer("syncbridge.executor.wait_duration", dimensions)
        let runs = try metrics.expectTimer("syncbridge.executor.run_duration", dimensions)
        #expect(waits.values.count == 3)
        // A job's run time is recorded after its submitter resumed, off the hop's critical path.
        let deadline = ContinuousClock.now + .seconds(10)
        while runs.values.count < 3 && ContinuousClock.now < deadline { await Task.yield() }
        #expect(runs.values.count == 3)
        #expect(waits.values.allSatisfy { $0 >= 0 })
        let depth = try metrics.expectMeter("syncbridge.executor.queue_depth", dimensions)
        #expect(!depth.values.isEmpty)

        await pool.shutdownGracefully()
        await #expect(throws: ExecutorError.self) { try await pool.run { 0 } }
        let rejected = try metrics.expectCounter("syncbridge.executor.rejected", dimensions)
        #expect(rejected.totalValue == 1)
    }

    @Test("start and shutdown are logged at debug level with the executor's name")
    func logs() async throws {
        let handler = InMemoryLogHandler()
        var logger = Logger(label: "test") { _ in handler }
        logger.logLevel = .debug
        let executor = ThreadExecutor(name: "sb-logged", logger: logger)
        await executor.shutdownGracefully()
        let messages = handler.entries.map { "\($0.level) \($0.message) \($0.metadata["executor"] ?? "-")" }
        #expect(messages == ["debug started sb-logged", "debug shutting down sb-logged", "debug stopped sb-logged"])
    }
}
