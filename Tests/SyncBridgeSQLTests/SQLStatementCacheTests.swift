import SyncBridgeSQL
import Testing

@Suite("SQLStatementCache")
struct SQLStatementCacheTests {
    @Test("keeps at most its capacity and evicts the least recently used")
    func leastRecentlyUsed() {
        var cache = SQLStatementCache<String, Int>(capacity: 3)
        #expect(cache.insert(1, for: "a") == nil)
        #expect(cache.insert(2, for: "b") == nil)
        #expect(cache.insert(3, for: "c") == nil)
        // Using "a" makes "b" the least recently used.
        #expect(cache.statement(for: "a") == 1)
        #expect(cache.insert(4, for: "d") == 2)
        #expect(cache.count == 3)
        #expect(cache.statement(for: "b") == nil)
        #expect(cache.insert(5, for: "e") == 3)
        #expect([cache.statement(for: "a"), cache.statement(for: "d"), cache.statement(for: "e")] == [1, 4, 5])
    }

    @Test("contains answers without counting as a use")
    func containsIsNotAUse() {
        var cache = SQLStatementCache<String, Int>(capacity: 2)
        _ = cache.insert(1, for: "a")
        _ = cache.insert(2, for: "b")
        #expect(cache.contains("a") && cache.contains("b") && !cache.contains("c"))
        // "a" stays the least recently used: it goes first.
        #expect(cache.insert(3, for: "c") == 1)
        #expect(!cache.contains("a"))
    }

    @Test("replacing a key returns the old statement; removing returns what was kept")
    func replaceAndRemove() {
        var cache = SQLStatementCache<String, Int>(capacity: 2)
        _ = cache.insert(1, for: "a")
        #expect(cache.insert(10, for: "a") == 1)
        #expect(cache.remove("a") == 10)
        #expect(cache.remove("a") == nil)
        _ = cache.insert(2, for: "b")
        _ = cache.insert(3, for: "c")
        #expect(Set(cache.removeAll()) == [2, 3])
        #expect(cache.count == 0)
    }
}
