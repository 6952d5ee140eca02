import CLibPQ
import Foundation
import InventoryLegacy
import SampleSupport
import StockValuation
import SyncBridgePostgres
import SyncBridgeTesting
import Testing

/// The watchdog in a test suite: `.watchdog(timesEveryJob: true)` fails any test whose code holds
/// a cooperative thread for more than 100 ms, with the blocked thread's stack in the issue.
/// Per-job mode catches one slow job even while other cooperative threads are free.
@Suite("Stock valuation under the watchdog", .watchdog(timesEveryJob: true))
struct StockValuationTests {
    /// Passes: the legacy call runs on a connection thread.
    @Test("the offloaded handler passes")
    func offloaded() async throws {
        let databases = try await SampleDatabases.shared()
        let client = PostgresClient(connectionString: databases.postgresURL)
        let value = try await StockValuation.handler(client: client)
        await client.shutdown()
        #expect(value == StockValuation.expectedValue)
    }

    /// Fails, on purpose: the legacy handler blocks a cooperative thread for the whole query, and
    /// the watchdog turns that into a test failure naming `PQexec`. It runs only when asked
    /// (`SAMPLES_SHOW_WATCHDOG_FAILURE=1`); the samples' CI step runs it and checks that it fails.
    @Test(
        "the legacy handler fails: it blocks the cooperative pool",
        .enabled(if: ProcessInfo.processInfo.environment["SAMPLES_SHOW_WATCHDOG_FAILURE"] == "1")
    )
    func legacy() async throws {
        let databases = try await SampleDatabases.shared()
        // check-blocking: allow the test's set-up: the legacy handler's connection
        let connection = try PostgresInventorySQL.connect(databases.postgresURL)
        defer { PQfinish(connection) }
        let value = try await StockValuation.legacyHandler(connection: connection)
        #expect(value == StockValuation.expectedValue)
    }
}
