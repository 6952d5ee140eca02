public import CMariaDB
import Foundation
public import InventoryCore

/// The legacy data layer for MariaDB, as such code is written: synchronous functions that take the
/// connection's `MYSQL*` and call Connector/C directly, building statements with
/// `mysql_real_escape_string`.
///
/// The wrapped form of the service calls these same functions, unchanged, through
/// `withRawConnection`.
public enum MariaDBInventorySQL {
    /// Opens a connection (`mysql_real_connect`) from a `mariadb://user:password@host:port/database`
    /// URL.
    ///
    /// - Throws: ``InventoryError/database(_:)`` with Connector/C's message (never the password).
    public static func connect(url: String) throws -> UnsafeMutablePointer<MYSQL> {
        guard let components = URLComponents(string: url), let host = components.host, let user = components.user else {
            throw InventoryError.database("not a mariadb://user:password@host:port/database URL")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard let connection = mysql_init(nil) else {
            throw InventoryError.database("mysql_init returned no handle (out of memory)")
        }
        let connected = mysql_real_connect(
            connection,
            host,
            user.removingPercentEncoding ?? user,
            components.password?.removingPercentEncoding,
            database,
            UInt32(components.port ?? 3306),
            nil,
            0
        )
        guard connected != nil else {
            let message = String(cString: mysql_error(connection))
            mysql_close(connection)
            throw InventoryError.database(message)
        }
        return connection
    }

    /// Drops and creates the inventory's tables.
    public static func resetSchema(_ connection: UnsafeMutablePointer<MYSQL>) throws {
        for statement in InventorySchema.mariaDB {
            try execute(connection, statement)
        }
    }

    /// Inserts a product.
    public static func addProduct(
        _ connection: UnsafeMutablePointer<MYSQL>,
        sku: String,
        name: String,
        stock: Int
    ) throws {
        guard stock >= 0 else { throw InventoryError.invalidQuantity(stock) }
        do {
            try execute(
                connection,
                "INSERT INTO products (sku, name, stock) VALUES ('\(escape(connection, sku))', '\(escape(connection, name))', \(stock))"
            )
        } catch let failure as ConnectorFailure where failure.code == duplicateKey {
            throw InventoryError.duplicateProduct(sku: sku)
        }
    }

    /// The product with this SKU, or `nil`.
    public static func product(_ connection: UnsafeMutablePointer<MYSQL>, sku: String) throws -> Product? {
        try rows(connection, "SELECT sku, name, stock, reserved FROM products WHERE sku = '\(escape(connection, sku))'")
            .first.map(product(from:))
    }

    /// Reserves units in one transaction: locks the product's row, checks what is available,
    /// records the reservation.
    public static func reserve(
        _ connection: UnsafeMutablePointer<MYSQL>,
        sku: String,
        quantity: Int,
        order: String
    ) throws -> Int {
        guard quantity > 0 else { throw InventoryError.invalidQuantity(quantity) }
        let quotedSKU = escape(connection, sku)
        return try inTransaction(connection) {
            let found = try rows(
                connection,
                "SELECT stock - reserved FROM products WHERE sku = '\(quotedSKU)' FOR UPDATE"
            )
            guard let row = found.first else { throw InventoryError.unknownProduct(sku: sku) }
            let available = Int(row[0] ?? "") ?? 0
            guard available >= quantity else {
                throw InventoryError.insufficientStock(sku: sku, requested: quantity, available: available)
            }
            try execute(connection, "UPDATE products SET reserved = reserved + \(quantity) WHERE sku = '\(quotedSKU)'")
            try execute(
                connection,
                "INSERT INTO reservations (sku, quantity, order_ref) VALUES ('\(quotedSKU)', \(quantity), '\(escape(connection, order))')"
            )
            return Int(mysql_insert_id(connection))
        }
    }

    /// Deletes a reservation and returns its units, in one transaction.
    public static func release(_ connection: UnsafeMutablePointer<MYSQL>, reservation: Int) throws {
        try inTransaction(connection) {
            let found = try rows(
                connection,
                "SELECT sku, quantity FROM reservations WHERE id = \(reservation) FOR UPDATE"
            )
            guard let row = found.first, let sku = row[0], let quantity = Int(row[1] ?? "") else {
                throw InventoryError.unknownReservation(id: reservation)
            }
            try execute(connection, "DELETE FROM reservations WHERE id = \(reservation)")
            try execute(
                connection,
                "UPDATE products SET reserved = reserved - \(quantity) WHERE sku = '\(escape(connection, sku))'"
            )
        }
    }

    /// Adds units to a product's stock.
    public static func restock(_ connection: UnsafeMutablePointer<MYSQL>, sku: String, quantity: Int) throws {
        guard quantity > 0 else { throw InventoryError.invalidQuantity(quantity) }
        try execute(
            connection,
            "UPDATE products SET stock = stock + \(quantity) WHERE sku = '\(escape(connection, sku))'"
        )
        guard mysql_affected_rows(connection) == 1 else { throw InventoryError.unknownProduct(sku: sku) }
    }

    /// The products with fewer than `threshold` units available, by SKU.
    public static func lowStock(_ connection: UnsafeMutablePointer<MYSQL>, below threshold: Int) throws -> [Product] {
        try rows(
            connection,
            "SELECT sku, name, stock, reserved FROM products WHERE stock - reserved < \(threshold) ORDER BY sku"
        )
        .map(product(from:))
    }

    // MARK: Connector/C plumbing, as legacy code has it

    /// `ER_DUP_ENTRY`.
    static let duplicateKey: UInt32 = 1062

    /// A failed Connector/C call: the error number and message.
    struct ConnectorFailure: Error {
        let code: UInt32
        let message: String
    }

    static func failure(_ connection: UnsafeMutablePointer<MYSQL>) -> ConnectorFailure {
        ConnectorFailure(code: mysql_errno(connection), message: String(cString: mysql_error(connection)))
    }

    /// Escapes a string for a quoted literal in the connection's character set.
    static func escape(_ connection: UnsafeMutablePointer<MYSQL>, _ text: String) -> String {
        let utf8 = Array(text.utf8CString)
        var escaped = [CChar](repeating: 0, count: utf8.count * 2 + 1)
        let length = mysql_real_escape_string(connection, &escaped, utf8, UInt(utf8.count - 1))
        return String(decoding: escaped[0..<Int(length)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Runs a statement that returns no rows.
    static func execute(_ connection: UnsafeMutablePointer<MYSQL>, _ sql: String) throws {
        do {
            if mysql_real_query(connection, sql, UInt(sql.utf8.count)) != 0 { throw failure(connection) }
        } catch let failure as ConnectorFailure where failure.code != duplicateKey {
            throw InventoryError.database("\(failure.code) \(failure.message)")
        }
    }

    /// Runs a query and returns its rows as text (`nil` for NULL).
    static func rows(_ connection: UnsafeMutablePointer<MYSQL>, _ sql: String) throws -> [[String?]] {
        guard mysql_real_query(connection, sql, UInt(sql.utf8.count)) == 0 else {
            let failure = failure(connection)
            throw InventoryError.database("\(failure.code) \(failure.message)")
        }
        guard let result = mysql_store_result(connection) else {
            let failure = failure(connection)
            throw InventoryError.database("\(failure.code) \(failure.message)")
        }
        defer { mysql_free_result(result) }
        let columns = Int(mysql_num_fields(result))
        var rows: [[String?]] = []
        while let row = mysql_fetch_row(result) {
            let lengths = mysql_fetch_lengths(result)!
            rows.append(
                (0..<columns).map { column in
                    row[column].map {
                        String(decoding: UnsafeRawBufferPointer(start: $0, count: Int(lengths[column])), as: UTF8.self)
                    }
                }
            )
        }
        return rows
    }

    static func product(from row: [String?]) -> Product {
        Product(sku: row[0] ?? "", name: row[1] ?? "", stock: Int(row[2] ?? "") ?? 0, reserved: Int(row[3] ?? "") ?? 0)
    }

    /// Runs `body` between `START TRANSACTION` and `COMMIT`; rolls back when it throws.
    static func inTransaction<T>(_ connection: UnsafeMutablePointer<MYSQL>, _ body: () throws -> T) throws -> T {
        try execute(connection, "START TRANSACTION")
        do {
            let value = try body()
            try execute(connection, "COMMIT")
            return value
        } catch {
            _ = try? execute(connection, "ROLLBACK")
            throw error
        }
    }
}
