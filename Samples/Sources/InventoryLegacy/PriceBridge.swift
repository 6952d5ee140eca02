import Dispatch
import SyncBridge
import Synchronization

/// A newer part of the system, written with async/await: the price list. Legacy synchronous code
/// needs its answers, which is where sync-over-async bridges come from.
public actor PriceList {
    private var prices: [String: Int]

    /// A price list; prices in cents by SKU.
    public init(prices: [String: Int]) {
        self.prices = prices
    }

    /// The price of one unit, or `nil` for an unknown SKU.
    public func price(of sku: String) -> Int? {
        prices[sku]
    }
}

/// The legacy order total, before and after step 2 of MIGRATION.md.
public enum PriceBridge {
    /// Before: synchronous code waits for the async price list with a semaphore. On a plain
    /// thread it works. On one of Swift's cooperative threads it blocks the thread, and once
    /// every cooperative thread of the band waits like this, the task that would signal never
    /// runs: the process hangs, silently.
    public static func totalBlocking(of order: [String: Int], in prices: PriceList) -> Int? {
        let answered = DispatchSemaphore(value: 0)
        let total = Mutex<Int?>(nil)
        Task {
            let sum = await priceSum(of: order, in: prices)
            total.withLock { $0 = sum }
            answered.signal()
        }
        answered.wait()
        return total.withLock { $0 }
    }

    /// After: the guarded wait. On a SyncBridge thread (a pooled connection's, in
    /// `withRawConnection`, or a `BlockingPool`'s) it blocks as before; on a cooperative thread it
    /// throws `GuardedWaitError` at once, naming this line, and the deadlock detector reports the
    /// caller: the hang becomes an error that says where to look.
    ///
    /// - Returns: The order's total in cents, or `nil` when a SKU has no price.
    public static func total(of order: [String: Int], in prices: PriceList) throws -> Int? {
        try waitForAsync { await priceSum(of: order, in: prices) }
    }

    private static func priceSum(of order: [String: Int], in prices: PriceList) async -> Int? {
        var sum = 0
        for (sku, quantity) in order {
            guard let price = await prices.price(of: sku) else { return nil }
            sum += price * quantity
        }
        return sum
    }
}
