import Testing

@testable import SyncBridgeSQL

@Suite("Span and metric names from a statement")
struct SQLTracingNamesTests {
    @Test("the operation is the first keyword, upper-cased; none for anything else")
    func operations() {
        #expect(SQLTracing.operationName(of: "select 1") == "SELECT")
        #expect(SQLTracing.operationName(of: "  \n(SELECT 1) UNION (SELECT 2)") == "SELECT")
        #expect(SQLTracing.operationName(of: "WITH t AS (SELECT 1) SELECT * FROM t") == "WITH")
        #expect(SQLTracing.operationName(of: "insert into t values ($1)") == "INSERT")
        #expect(SQLTracing.operationName(of: "COPY t FROM STDIN") == "COPY")
        #expect(SQLTracing.operationName(of: "-- a comment\nSELECT 1") == nil)
        #expect(SQLTracing.operationName(of: "") == nil)
        #expect(SQLTracing.operationName(of: "SÉLECT 1") == nil)
    }

    @Test("the table of a simple statement; none for joins, lists of tables and subqueries")
    func collections() {
        func table(_ sql: String) -> String? {
            SQLTracing.collectionName(of: sql, operation: SQLTracing.operationName(of: sql) ?? "")
        }
        #expect(table("INSERT INTO orders (id) VALUES ($1)") == "orders")
        #expect(table("UPDATE shop.orders SET total = $1") == "shop.orders")
        #expect(table("DELETE FROM \"Orders\" WHERE id = $1") == "\"Orders\"")
        #expect(table("SELECT id FROM orders WHERE id = $1") == "orders")
        #expect(table("SELECT id FROM orders, lines WHERE true") == nil)
        #expect(table("SELECT id FROM orders JOIN lines USING (id)") == nil)
        #expect(table("SELECT id FROM (SELECT 1 AS id) AS sub") == nil)
        #expect(table("COPY items (id) FROM STDIN") == "items")
        #expect(table("SELECT 1") == nil)
    }
}
