public import InventoryCore
import InventoryLegacy
public import SyncBridgeMariaDB
public import SyncBridgePostgres

/// Step 1 of MIGRATION.md: the legacy functions, unchanged, each call on a pooled connection's own
/// thread through `withRawConnection`.
///
/// Compared with ``LegacyInventory``, two things changed and nothing else: the global connection
/// and its semaphore became a pool (calls no longer take turns on one connection), and the
/// blocking C calls left the cooperative pool (tasks await them instead of holding a thread).
/// `PostgresInventorySQL` and `MariaDBInventorySQL` are the very functions the legacy service
/// calls.
///
/// ```swift
/// let client = PostgresClient(connectionString: url)
/// let inventory = WrappedInventory(client)
/// let id = try await inventory.reserve(sku: "SKU-1", quantity: 2, order: "order-7")
/// ```
public struct WrappedInventory: Inventory {
    /// The client whose pooled connections run the legacy functions.
    public enum Client: Sendable {
        /// PostgreSQL through libpq.
        case postgres(PostgresClient)
        /// MariaDB through Connector/C.
        case mariaDB(MariaDBClient)
    }

    /// The client in use.
    public let client: Client

    /// Runs the legacy PostgreSQL functions on `client`'s connections.
    public init(_ client: PostgresClient) {
        self.client = .postgres(client)
    }

    /// Runs the legacy MariaDB functions on `client`'s connections.
    public init(_ client: MariaDBClient) {
        self.client = .mariaDB(client)
    }

    /// `wrapped (PostgreSQL)`.
    public var name: String {
        switch client {
        case .postgres: "wrapped (PostgreSQL)"
        case .mariaDB: "wrapped (MariaDB)"
        }
    }

    /// See ``Inventory/resetSchema()``.
    public func resetSchema() async throws {
        switch client {
        case .postgres(let client): try await client.withRawConnection { try PostgresInventorySQL.resetSchema($0) }
        case .mariaDB(let client): try await client.withRawConnection { try MariaDBInventorySQL.resetSchema($0) }
        }
    }

    /// See ``Inventory/addProduct(sku:name:stock:)``.
    public func addProduct(sku: String, name: String, stock: Int) async throws {
        switch client {
        case .postgres(let client):
            try await client.withRawConnection {
                try PostgresInventorySQL.addProduct($0, sku: sku, name: name, stock: stock)
            }
        case .mariaDB(let client):
            try await client.withRawConnection {
                try MariaDBInventorySQL.addProduct($0, sku: sku, name: name, stock: stock)
            }
        }
    }

    /// See ``Inventory/product(sku:)``.
    public func product(sku: String) async throws -> Product? {
        switch client {
        case .postgres(let client):
            try await client.withRawConnection { try PostgresInventorySQL.product($0, sku: sku) }
        case .mariaDB(let client): try await client.withRawConnection { try MariaDBInventorySQL.product($0, sku: sku) }
        }
    }

    /// See ``Inventory/reserve(sku:quantity:order:)``.
    public func reserve(sku: String, quantity: Int, order: String) async throws -> Int {
        switch client {
        case .postgres(let client):
            try await client.withRawConnection {
                try PostgresInventorySQL.reserve($0, sku: sku, quantity: quantity, order: order)
            }
        case .mariaDB(let client):
            try await client.withRawConnection {
                try MariaDBInventorySQL.reserve($0, sku: sku, quantity: quantity, order: order)
            }
        }
    }

    /// See ``Inventory/release(reservation:)``.
    public func release(reservation: Int) async throws {
        switch client {
        case .postgres(let client):
            try await client.withRawConnection { try PostgresInventorySQL.release($0, reservation: reservation) }
        case .mariaDB(let client):
            try await client.withRawConnection { try MariaDBInventorySQL.release($0, reservation: reservation) }
        }
    }

    /// See ``Inventory/restock(sku:quantity:)``.
    public func restock(sku: String, quantity: Int) async throws {
        switch client {
        case .postgres(let client):
            try await client.withRawConnection { try PostgresInventorySQL.restock($0, sku: sku, quantity: quantity) }
        case .mariaDB(let client):
            try await client.withRawConnection { try MariaDBInventorySQL.restock($0, sku: sku, quantity: quantity) }
        }
    }

    /// See ``Inventory/lowStock(below:)``.
    public func lowStock(below threshold: Int) async throws -> [Product] {
        switch client {
        case .postgres(let client):
            try await client.withRawConnection { try PostgresInventorySQL.lowStock($0, below: threshold) }
        case .mariaDB(let client):
            try await client.withRawConnection { try MariaDBInventorySQL.lowStock($0, below: threshold) }
        }
    }
}
