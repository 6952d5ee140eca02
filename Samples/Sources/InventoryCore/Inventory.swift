/// The inventory service's operations, as async callers see them. The legacy, wrapped and
/// migrated forms all conform, and one behavioural test suite runs against each of them.
public protocol Inventory: Sendable {
    /// Names the form and the database in tables and test names: `wrapped (PostgreSQL)`.
    var name: String { get }

    /// Creates the tables, dropping any that exist: an empty inventory.
    func resetSchema() async throws

    /// Adds a product.
    ///
    /// - Throws: ``InventoryError/duplicateProduct(sku:)`` when the SKU exists;
    ///   ``InventoryError/invalidQuantity(_:)`` for negative stock.
    func addProduct(sku: String, name: String, stock: Int) async throws

    /// The product with this SKU, or `nil`.
    func product(sku: String) async throws -> Product?

    /// Reserves units of a product for an order, atomically: either the units are available and
    /// reserved, or nothing changes.
    ///
    /// - Returns: The reservation's id, for ``release(reservation:)``.
    /// - Throws: ``InventoryError/unknownProduct(sku:)``,
    ///   ``InventoryError/insufficientStock(sku:requested:available:)``,
    ///   ``InventoryError/invalidQuantity(_:)``.
    func reserve(sku: String, quantity: Int, order: String) async throws -> Int

    /// Releases a reservation: its units become available again.
    ///
    /// - Throws: ``InventoryError/unknownReservation(id:)`` when it does not exist (any more).
    func release(reservation: Int) async throws

    /// Adds units to a product's stock.
    ///
    /// - Throws: ``InventoryError/unknownProduct(sku:)``, ``InventoryError/invalidQuantity(_:)``.
    func restock(sku: String, quantity: Int) async throws

    /// The products with fewer than `threshold` units available, by SKU.
    func lowStock(below threshold: Int) async throws -> [Product]
}
