import Foundation
import NIOPosix
import SampleSupport
import StockValuation
import SyncBridge
import SyncBridgeNIO
import SyncBridgePostgres
import SyncBridgeTesting
import Testing
import VaporTesting
import VaporValuation

/// The event-loop watchdog in a Vapor test suite: `.watchdog(eventLoops:)` also watches the loops
/// of `MultiThreadedEventLoopGroup.singleton`, the group a Vapor application runs on by default,
/// and fails any test whose route blocks its loop for more than 100 ms, with the loop thread's
/// stack in the issue.
@Suite(
    "The stock valuation route, three ways, under the event-loop watchdog",
    .watchdog(eventLoops: MultiThreadedEventLoopGroup.singleton.watchdogTargets)
)
struct VaporValuationTests {
    /// Runs `body` with an application whose valuation routes use the sample database.
    func withValuationApp(_ body: (Application) async throws -> Void) async throws {
        let databases = try await SampleDatabases.shared()
        let legacyCallers = BlockingPool(name: "legacy-reports", threadCount: 1)
        let client = PostgresClient(connectionString: databases.postgresURL)
        let connectionString = databases.postgresURL
        // check-blocking: allow the test's set-up: the legacy program's global connection
        let legacy = try await legacyCallers.run { try LegacyValuationDatabase(connectionString: connectionString) }
        try await withApp { app in
            // check-blocking: allow registering routes: the legacy route's closure runs later, on an
            // event loop, where the suite's watchdog trait checks it
            registerValuationRoutes(on: app, legacy: legacy, legacyCallers: legacyCallers, client: client)
            try await body(app)
        }
        await client.shutdown()
        await legacyCallers.shutdownGracefully()
    }

    @Test("the offloaded route passes: the legacy call runs on a BlockingPool thread")
    func offloaded() async throws {
        try await withValuationApp { app in
            try await app.testing().test(.GET, "valuation/offloaded") { response in
                #expect(response.status == .ok)
                #expect(response.body.string == String(StockValuation.expectedValue))
            }
        }
    }

    @Test("the migrated route passes: async, on the facade's pooled client")
    func migrated() async throws {
        try await withValuationApp { app in
            try await app.testing().test(.GET, "valuation/migrated") { response in
                #expect(response.status == .ok)
                #expect(response.body.string == String(StockValuation.expectedValue))
            }
        }
    }

    /// Fails, on purpose: the legacy route blocks its event loop for the whole query, and the
    /// watchdog turns that into a test failure with the loop thread's stack. It runs only when asked
    /// (`SAMPLES_SHOW_WATCHDOG_FAILURE=1`); the samples' CI step runs it and checks that it fails.
    @Test(
        "the legacy route fails: it blocks its event loop",
        .enabled(if: ProcessInfo.processInfo.environment["SAMPLES_SHOW_WATCHDOG_FAILURE"] == "1")
    )
    func legacy() async throws {
        try await withValuationApp { app in
            try await app.testing().test(.GET, "valuation/legacy") { response in
                #expect(response.status == .ok)
                #expect(response.body.string == String(StockValuation.expectedValue))
            }
        }
    }
}
