import Foundation
import SyncBridge
import SyncBridgeBlockingCheck
import Testing

/// The check's work — reading and parsing files, a second of CPU for the samples — runs on a
/// thread of its own, not on the cooperative pool that the other tests of the process share.
let checkThread = BlockingPool(name: "check-tests", threadCount: 1)

/// ``CheckRun/run(paths:root:configuration:baseline:)`` on ``checkThread``.
func runCheck(
    paths: [String],
    root: String,
    configuration: CheckConfiguration,
    baseline: Baseline?
) async throws -> CheckReport {
    try await checkThread.run {
        try CheckRun.run(paths: paths, root: root, configuration: configuration, baseline: baseline)
    }
}

/// The check over the repository's `Samples/` package.
@Suite("check-blocking over Samples")
struct SamplesCheckTests {
    /// `Samples/`, next to this package's `Tests/`.
    static let samples = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Samples").path

    @Test(
        "finds the legacy inventory's blocking paths from its async interface and the legacy handler; nothing in the wrapped and migrated forms"
    )
    func legacyPathsOnly() async throws {
        let report = try await runCheck(
            paths: [Self.samples + "/Sources", Self.samples + "/Tests"],
            root: Self.samples,
            configuration: CheckConfiguration(),
            baseline: nil
        )
        let store = "Sources/InventoryLegacy/LegacyInventoryStore.swift"
        func legacy(_ method: String, _ line: Int) -> String {
            "\(store):\(line): LegacyInventory.\(method) → LegacyInventoryStore.\(method) → LegacyInventoryStore.withTurn(fileID:line:_:) → GuardedSemaphore.wait"
        }
        // Each of the legacy form's calls the demo's watchdog reports when its tasks call the store.
        #expect(
            report.findings.map { "\($0.location.file):\($0.location.line): \($0.path)" } == [
                legacy("resetSchema()", 220),
                legacy("addProduct(sku:name:stock:)", 224),
                legacy("product(sku:)", 228),
                legacy("reserve(sku:quantity:order:)", 232),
                legacy("release(reservation:)", 236),
                legacy("restock(sku:quantity:)", 240),
                legacy("lowStock(below:)", 245),
                "Sources/StockValuation/StockValuation.swift:37: StockValuation.legacyHandler(connection:) → StockValuation.compute(_:) → PQexec",
            ]
        )
        // Every store call also reaches the plain semaphore and the database client.
        for finding in report.findings.dropLast() {
            #expect(finding.alsoReaches.contains("DispatchSemaphore.wait"), "\(finding.path)")
            #expect(finding.alsoReaches.contains("PQexecParams") && finding.alsoReaches.contains("mysql_real_query"))
        }
        // The one-off connections the demo, the live feed and the tests open on purpose carry a
        // suppression with their reason; so does the Vapor test's route registration (the check
        // takes the routes' closures for calls made at once; the legacy route blocks its event
        // loop later, where the watchdog trait checks it).
        #expect(report.suppressed.count == 10)
        let vaporTest = "Tests/VaporValuationTests/VaporValuationTests.swift"
        #expect(report.suppressed.contains { $0.location.file == vaporTest })
        #expect(report.suppressed.allSatisfy { $0.suppressedBecause?.isEmpty == false })
        let wrappedOrMigrated = (report.findings + report.suppressed).filter {
            $0.location.file.contains("InventoryWrapped") || $0.location.file.contains("InventoryMigrated")
                || $0.location.file.contains("InventoryServer")
        }
        #expect(wrappedOrMigrated.isEmpty)
        #expect(report.fileCount >= 35)
    }

    @Test("the samples' baseline lists exactly what the check finds")
    func baselineIsCurrent() async throws {
        let report = try await runCheck(
            paths: [Self.samples + "/Sources", Self.samples + "/Tests"],
            root: Self.samples,
            configuration: CheckConfiguration(),
            baseline: try CheckRun.baseline(at: Self.samples + "/check-blocking-baseline.json")
        )
        #expect(report.findings.isEmpty)
        #expect(report.stale.isEmpty)
        #expect(report.expected.count == 8)
        #expect(!report.failsStrictMode)
    }
}
