import Foundation
import Testing

@testable import SyncBridge

/// The sentences of the deadlock catalogue (DeadlockDetection.md) that the pattern tests do not
/// already show, each shown here exactly.
@Suite("Deadlock catalogue: what the documentation says, shown")
struct DeadlockCatalogueTests {
    @Test(
        "pattern 5: a CheckedMutex taken while an AsyncMutex is held takes part in the lock order, and the reverse order through a guarded wait is an inversion"
    )
    func checkedMutexUnderAsyncMutex() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let catalog = AsyncMutex(0, lockClass: "catalog-\(suffix)")
        let counters = CheckedMutex(0, lockClass: "counters-\(suffix)")
        let (_, reports) = try await withDeadlockReports(mode: .report) {
            // A task: the AsyncMutex, then the CheckedMutex.
            try await catalog.withLock { _ in counters.withLock { $0 += 1 } }
            // Legacy code on a pool thread: the CheckedMutex, then (through a guarded wait) the
            // AsyncMutex. They never overlap, so nothing hangs.
            let pool = BlockingPool(name: "sb-dl-mixed", threadCount: 1)
            let waited = try await pool.run {
                counters.withLock { _ in legacyWait { try await catalog.withLock { $0 += 1 } } }
            }
            try waited.get()
            await pool.shutdownGracefully()
        }
        #expect(reports.count == 1, "\(reports)")
        let report = try #require(reports.first)
        #expect(report.pattern == .lockOrderInversion)
        #expect(report.headline.contains("catalog-\(suffix)") && report.headline.contains("counters-\(suffix)"))
        #expect(!report.thrown)
    }

    @Test("pattern 5: taking a CheckedMutex again on the thread that holds it stops the process with a report")
    func checkedMutexReentry() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let detector = DeadlockDetector(configuration: .init(mode: .report))
            detector.start()
            let mutex = CheckedMutex(0, lockClass: "reentered")
            mutex.withLock { _ in mutex.withLock { $0 += 1 } }
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("reentered"), "\(message)")
        #expect(message.contains("DEADLOCK"), "\(message)")
    }

    @Test(
        "reports in tests: lock order is process-wide, and an inversion is reported to the scope that takes the second order"
    )
    func inversionGoesToTheSecondOrder() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let orders = AsyncMutex(0, lockClass: "orders-\(suffix)")
        let stock = AsyncMutex(0, lockClass: "stock-\(suffix)")
        // Two tests, one after the other, each with a detector of its own scope.
        let (_, first) = try await withDeadlockReports(mode: .report) {
            try await orders.withLock { _ in try await stock.withLock { $0 += 1 } }
        }
        let (_, second) = try await withDeadlockReports(mode: .report) {
            try await stock.withLock { _ in try await orders.withLock { $0 += 1 } }
        }
        #expect(first.isEmpty, "\(first)")
        #expect(second.count == 1, "\(second)")
        #expect(second.first?.pattern == .lockOrderInversion)
        // The report names both orders, the first scope's included.
        #expect(second.first?.chain.compactMap(\.callSite).count == 4)
    }
}
