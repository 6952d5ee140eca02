import CLibPQ
import Foundation
import InventoryCore

/// The legacy lookup the sample fans out: one blocking libpq call per item, on a connection the
/// caller owns. The supplier's database stands in for a remote service: each lookup waits 5 ms on
/// the server, as a network round trip would.
enum SupplierCatalogue {
    /// Creates the supplier's price list: one price per SKU, `price(of:)` for item `number`.
    static func create(_ connection: OpaquePointer, items: Int) throws {
        try execute(connection, "SET client_min_messages = warning")  // no notice if the table is new
        try execute(connection, "DROP TABLE IF EXISTS supplier_prices")
        try execute(connection, "CREATE TABLE supplier_prices (sku text PRIMARY KEY, price integer NOT NULL)")
        try execute(
            connection,
            "INSERT INTO supplier_prices SELECT 'SKU-' || n, 100 + n % 900 FROM generate_series(0, \(items - 1)) AS n"
        )
    }

    /// The price the catalogue holds for item `number`.
    static func price(of number: Int) -> Int { 100 + number % 900 }

    /// Looks one SKU up: blocks the calling thread for the round trip.
    static func lookUp(_ connection: OpaquePointer, sku: String) throws -> Int {
        let result = sku.withCString { sku in
            let values: [UnsafePointer<CChar>?] = [sku]
            return PQexecParams(
                connection,
                "SELECT price FROM supplier_prices, pg_sleep(0.005) WHERE sku = $1",
                1,
                nil,
                values,
                nil,
                nil,
                0
            )
        }
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_TUPLES_OK, PQntuples(result) == 1 else {
            throw InventoryError.database("lookup of \(sku) failed: \(String(cString: PQerrorMessage(connection)))")
        }
        return Int(String(cString: PQgetvalue(result, 0, 0))) ?? -1
    }

    private static func execute(_ connection: OpaquePointer, _ sql: String) throws {
        let result = PQexec(connection, sql)
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_COMMAND_OK else {
            throw InventoryError.database(String(cString: PQerrorMessage(connection)))
        }
    }
}
