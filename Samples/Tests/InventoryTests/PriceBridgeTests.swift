import InventoryLegacy
import SyncBridge
import Testing

/// Step 2 of MIGRATION.md: the semaphore bridge replaced by the guarded wait keeps its answers on
/// threads, and refuses to block a cooperative thread instead of risking a hang.
@Suite("The legacy order total, bridged with a semaphore and with the guarded wait")
struct PriceBridgeTests {
    let prices = PriceList(prices: ["MUG": 1250, "BOWL": 899])
    let order = ["MUG": 2, "BOWL": 3]

    @Test("on a legacy thread both bridges give the same totals")
    func sameAnswers() async throws {
        let (prices, order) = (self.prices, self.order)
        let (blocking, guarded, unknown) = try await legacyCallers.run {
            (
                PriceBridge.totalBlocking(of: order, in: prices),
                try PriceBridge.total(of: order, in: prices),
                try PriceBridge.total(of: ["NOPE": 1], in: prices)
            )
        }
        #expect(blocking == 2 * 1250 + 3 * 899)
        #expect(guarded == blocking)
        #expect(unknown == nil)
    }

    @Test("on a cooperative thread the guarded wait throws at once, naming the call site")
    func refusedOnCooperativeThread() async throws {
        let error = #expect(throws: GuardedWaitError.self) {
            // check-blocking: allow the test shows that here the guarded wait throws instead of blocking
            try PriceBridge.total(of: order, in: prices)
        }
        #expect(error?.reason == .cooperativeThread)
        #expect(error?.callSite.fileID == "InventoryLegacy/PriceBridge.swift")
    }
}
