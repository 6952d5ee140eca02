import CLibPQ
public import InventoryCore

#if canImport(Glibc)
import Glibc
#endif

/// The legacy data layer for PostgreSQL, as such code is written: synchronous functions that take
/// the connection's `PGconn*` and call libpq directly.
///
/// Nothing here knows about Swift concurrency. The wrapped form of the service calls these same
/// functions, unchanged, through `withRawConnection`; only the place they run changes.
public enum PostgresInventorySQL {
    /// Opens a connection (`PQconnectdb`).
    ///
    /// - Parameter connectionString: A libpq connection string or `postgres://` URL.
    /// - Throws: ``InventoryError/database(_:)`` with libpq's message (which never repeats the
    ///   password).
    public static func connect(_ connectionString: String) throws -> OpaquePointer {
        guard let connection = PQconnectdb(connectionString) else {
            throw InventoryError.database("PQconnectdb returned no connection (out of memory)")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(connection))
            PQfinish(connection)
            throw InventoryError.database(message.trimmingTrailingNewlines)
        }
        return connection
    }

    /// Drops and creates the inventory's tables.
    public static func resetSchema(_ connection: OpaquePointer) throws {
        for statement in InventorySchema.postgres {
            _ = try execute(connection, statement)
        }
    }

    /// Inserts a product.
    public static func addProduct(_ connection: OpaquePointer, sku: String, name: String, stock: Int) throws {
        guard stock >= 0 else { throw InventoryError.invalidQuantity(stock) }
        let result = try execute(
            connection,
            "INSERT INTO products (sku, name, stock) VALUES ($1, $2, $3) ON CONFLICT (sku) DO NOTHING",
            [sku, name, String(stock)]
        )
        guard result.affectedRows == 1 else { throw InventoryError.duplicateProduct(sku: sku) }
    }

    /// The product with this SKU, or `nil`.
    public static func product(_ connection: OpaquePointer, sku: String) throws -> Product? {
        let result = try execute(connection, "SELECT sku, name, stock, reserved FROM products WHERE sku = $1", [sku])
        return result.rowCount == 0 ? nil : result.product(at: 0)
    }

    /// Reserves units in one transaction: locks the product's row, checks what is available,
    /// records the reservation.
    public static func reserve(_ connection: OpaquePointer, sku: String, quantity: Int, order: String) throws -> Int {
        guard quantity > 0 else { throw InventoryError.invalidQuantity(quantity) }
        return try inTransaction(connection) {
            let row = try execute(connection, "SELECT stock - reserved FROM products WHERE sku = $1 FOR UPDATE", [sku])
            guard row.rowCount == 1 else { throw InventoryError.unknownProduct(sku: sku) }
            let available = row.int(0, 0)
            guard available >= quantity else {
                throw InventoryError.insufficientStock(sku: sku, requested: quantity, available: available)
            }
            _ = try execute(
                connection,
                "UPDATE products SET reserved = reserved + $2 WHERE sku = $1",
                [sku, String(quantity)]
            )
            let inserted = try execute(
                connection,
                "INSERT INTO reservations (sku, quantity, order_ref) VALUES ($1, $2, $3) RETURNING id",
                [sku, String(quantity), order]
            )
            return inserted.int(0, 0)
        }
    }

    /// Deletes a reservation and returns its units, in one transaction.
    public static func release(_ connection: OpaquePointer, reservation: Int) throws {
        try inTransaction(connection) {
            let deleted = try execute(
                connection,
                "DELETE FROM reservations WHERE id = $1 RETURNING sku, quantity",
                [String(reservation)]
            )
            guard deleted.rowCount == 1 else { throw InventoryError.unknownReservation(id: reservation) }
            _ = try execute(
                connection,
                "UPDATE products SET reserved = reserved - $2 WHERE sku = $1",
                [deleted.string(0, 0), String(deleted.int(0, 1))]
            )
        }
    }

    /// Adds units to a product's stock.
    public static func restock(_ connection: OpaquePointer, sku: String, quantity: Int) throws {
        guard quantity > 0 else { throw InventoryError.invalidQuantity(quantity) }
        let result = try execute(
            connection,
            "UPDATE products SET stock = stock + $2 WHERE sku = $1",
            [sku, String(quantity)]
        )
        guard result.affectedRows == 1 else { throw InventoryError.unknownProduct(sku: sku) }
    }

    /// The products with fewer than `threshold` units available, by SKU.
    public static func lowStock(_ connection: OpaquePointer, below threshold: Int) throws -> [Product] {
        let result = try execute(
            connection,
            "SELECT sku, name, stock, reserved FROM products WHERE stock - reserved < $1 ORDER BY sku",
            [String(threshold)]
        )
        return (0..<result.rowCount).map { result.product(at: $0) }
    }

    // MARK: libpq plumbing, as legacy code has it

    /// A `PGresult`, cleared when dropped.
    final class QueryResult {
        let result: OpaquePointer

        init(_ result: OpaquePointer) { self.result = result }
        deinit { PQclear(result) }

        var rowCount: Int { Int(PQntuples(result)) }
        var affectedRows: Int { Int(String(cString: PQcmdTuples(result))) ?? 0 }
        func string(_ row: Int, _ column: Int) -> String {
            String(cString: PQgetvalue(result, Int32(row), Int32(column)))
        }
        func int(_ row: Int, _ column: Int) -> Int { Int(string(row, column)) ?? 0 }

        func product(at row: Int) -> Product {
            Product(sku: string(row, 0), name: string(row, 1), stock: int(row, 2), reserved: int(row, 3))
        }
    }

    /// `PQexecParams` with text parameters; throws unless the statement succeeded.
    static func execute(_ connection: OpaquePointer, _ sql: String, _ parameters: [String] = []) throws -> QueryResult {
        let copies = parameters.map { strdup($0) }
        defer { for copy in copies { free(copy) } }
        let values: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) }
        let raw = values.withUnsafeBufferPointer {
            PQexecParams(connection, sql, Int32(parameters.count), nil, $0.baseAddress, nil, nil, 0)
        }
        guard let raw else {
            throw InventoryError.database(String(cString: PQerrorMessage(connection)).trimmingTrailingNewlines)
        }
        let result = QueryResult(raw)
        switch PQresultStatus(raw) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK:
            return result
        default:
            let sqlState = PQresultErrorField(raw, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? "-----"
            let message = String(cString: PQresultErrorMessage(raw)).trimmingTrailingNewlines
            throw InventoryError.database("\(sqlState) \(message)")
        }
    }

    /// Runs `body` between `BEGIN` and `COMMIT`; rolls back when it throws.
    static func inTransaction<T>(_ connection: OpaquePointer, _ body: () throws -> T) throws -> T {
        _ = try execute(connection, "BEGIN")
        do {
            let value = try body()
            _ = try execute(connection, "COMMIT")
            return value
        } catch {
            _ = try? execute(connection, "ROLLBACK")
            throw error
        }
    }
}

extension String {
    var trimmingTrailingNewlines: String {
        var text = Substring(self)
        while text.last?.isNewline == true { text = text.dropLast() }
        return String(text)
    }
}
