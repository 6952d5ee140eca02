public import InventoryCore
public import SyncBridgeSQL

/// Step 3 of MIGRATION.md: the inventory written against SyncBridge's async API, once for both
/// databases (`PostgresInventory` and `MariaDBInventory` are this type over their clients).
///
/// Statements bind their parameters (no string building), rows decode into typed values,
/// transactions are scoped to a closure that commits or rolls back, and every call can be
/// cancelled: cancelling the calling task cancels the statement on the server (a reservation
/// waiting for a row lock gives up at once, and nothing is reserved).
///
/// The SQL is what PostgreSQL, MariaDB (10.5 or later, for `RETURNING`) and SQLite (3.35 or
/// later) all accept; the schema and the row lock differ, and are given to the initialiser.
///
/// ```swift
/// let inventory = PostgresInventory(client: PostgresClient(connectionString: url))
/// let id = try await inventory.reserve(sku: "SKU-1", quantity: 2, order: "order-7")
/// for try await product in try await inventory.allProducts() { print(product) }
/// ```
public struct MigratedInventory<Database: SQLDatabase>: Inventory {
    /// The client (or connection) the inventory runs on.
    public let client: Database
    /// How long one statement may run before the server cancels it; `nil` for no limit.
    public let statementTimeout: Duration?
    /// The statements that create the tables, in the database's dialect.
    public let schema: [String]
    /// What locks a product's row until the transaction ends: ` FOR UPDATE`, or nothing where the
    /// transaction holds the database's write lock from its start (SQLite's `BEGIN IMMEDIATE`).
    public let rowLock: SQLQuery
    /// Names the form in the demo's table.
    public let name: String

    /// Creates the inventory on `client`.
    ///
    /// - Parameters:
    ///   - client: The client, run by the caller (a `ServiceGroup` or a task).
    ///   - schema: The statements that create the tables.
    ///   - name: Names the form in reports.
    ///   - rowLock: What locks a product's row for the rest of the transaction.
    ///   - statementTimeout: How long one statement may run; the server cancels it then.
    public init(
        client: Database,
        schema: [String],
        name: String,
        rowLock: SQLQuery = " FOR UPDATE",
        statementTimeout: Duration? = .seconds(5)
    ) {
        self.client = client
        self.schema = schema
        self.rowLock = rowLock
        self.name = name
        self.statementTimeout = statementTimeout
    }

    /// See ``Inventory/resetSchema()``.
    public func resetSchema() async throws {
        for statement in schema {
            try await client.execute(SQLQuery(unsafeSQL: statement))
        }
    }

    /// See ``Inventory/addProduct(sku:name:stock:)``.
    public func addProduct(sku: String, name: String, stock: Int) async throws {
        guard stock >= 0 else { throw InventoryError.invalidQuantity(stock) }
        do {
            try await client.execute(
                "INSERT INTO products (sku, name, stock) VALUES (\(sku), \(name), \(stock))",
                timeout: statementTimeout
            )
        } catch let error as any SQLServerError where error.isUniqueViolation {
            throw InventoryError.duplicateProduct(sku: sku)
        }
    }

    /// See ``Inventory/product(sku:)``.
    public func product(sku: String) async throws -> Product? {
        try await client.query(
            "SELECT sku, name, stock, reserved FROM products WHERE sku = \(sku)",
            timeout: statementTimeout
        )
        .first.map(Product.init(row:))
    }

    /// See ``Inventory/reserve(sku:quantity:order:)``.
    public func reserve(sku: String, quantity: Int, order: String) async throws -> Int {
        guard quantity > 0 else { throw InventoryError.invalidQuantity(quantity) }
        let (timeout, rowLock) = (statementTimeout, rowLock)
        return try await client.withTransaction { connection in
            let locked = try await connection.query(
                "SELECT stock - reserved FROM products WHERE sku = \(sku)\(rowLock)",
                timeout: timeout
            )
            guard let row = locked.first else { throw InventoryError.unknownProduct(sku: sku) }
            let available = try row.decode(Int.self, at: 0)
            guard available >= quantity else {
                throw InventoryError.insufficientStock(sku: sku, requested: quantity, available: available)
            }
            try await connection.execute(
                "UPDATE products SET reserved = reserved + \(quantity) WHERE sku = \(sku)",
                timeout: timeout
            )
            let inserted = try await connection.query(
                "INSERT INTO reservations (sku, quantity, order_ref) VALUES (\(sku), \(quantity), \(order)) RETURNING id",
                timeout: timeout
            )
            return try inserted[0].decode(Int.self, at: 0)
        }
    }

    /// See ``Inventory/release(reservation:)``.
    public func release(reservation: Int) async throws {
        let timeout = statementTimeout
        try await client.withTransaction { connection in
            let deleted = try await connection.query(
                "DELETE FROM reservations WHERE id = \(reservation) RETURNING sku, quantity",
                timeout: timeout
            )
            guard let row = deleted.first else { throw InventoryError.unknownReservation(id: reservation) }
            let (sku, quantity) = try row.decode((String, Int).self)
            try await connection.execute(
                "UPDATE products SET reserved = reserved - \(quantity) WHERE sku = \(sku)",
                timeout: timeout
            )
        }
    }

    /// See ``Inventory/restock(sku:quantity:)``.
    public func restock(sku: String, quantity: Int) async throws {
        guard quantity > 0 else { throw InventoryError.invalidQuantity(quantity) }
        let updated = try await client.execute(
            "UPDATE products SET stock = stock + \(quantity) WHERE sku = \(sku)",
            timeout: statementTimeout
        )
        guard updated == 1 else { throw InventoryError.unknownProduct(sku: sku) }
    }

    /// See ``Inventory/lowStock(below:)``.
    public func lowStock(below threshold: Int) async throws -> [Product] {
        try await client.query(
            "SELECT sku, name, stock, reserved FROM products WHERE stock - reserved < \(threshold) ORDER BY sku",
            timeout: statementTimeout
        ).map(Product.init(row:))
    }

    /// Every product by SKU, streamed: the rows arrive in batches as they are consumed, so a
    /// catalogue of any size runs in bounded memory. Stop iterating to stop the statement.
    public func allProducts() async throws -> some AsyncSequence<Product, any Error> {
        try await client.stream("SELECT sku, name, stock, reserved FROM products ORDER BY sku")
            .map { try Product(row: $0) }
    }
}
