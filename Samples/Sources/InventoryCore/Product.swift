/// A product in stock: what every form of the inventory service returns.
public struct Product: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The stock-keeping unit, the product's key.
    public var sku: String
    /// The product's name.
    public var name: String
    /// Units on the shelf, reserved or not.
    public var stock: Int
    /// Units promised to orders and not yet released.
    public var reserved: Int

    /// Units that can still be reserved.
    public var available: Int { stock - reserved }

    /// Creates a product.
    public init(sku: String, name: String, stock: Int, reserved: Int) {
        self.sku = sku
        self.name = name
        self.stock = stock
        self.reserved = reserved
    }

    /// `SKU-1 "Name": 7 of 10 available`.
    public var description: String {
        "\(sku) \"\(name)\": \(available) of \(stock) available"
    }
}

/// Why an inventory operation was refused. Every form of the service throws the same errors for
/// the same inputs; database failures keep the driver's own error.
public enum InventoryError: Error, Hashable, CustomStringConvertible {
    /// No product has this SKU.
    case unknownProduct(sku: String)
    /// A product with this SKU exists already.
    case duplicateProduct(sku: String)
    /// Fewer units are available than were asked for.
    case insufficientStock(sku: String, requested: Int, available: Int)
    /// No reservation has this id (it never existed or was released).
    case unknownReservation(id: Int)
    /// A quantity must be positive (stock may be zero).
    case invalidQuantity(Int)
    /// The legacy C code reported an error: the client library's message.
    case database(String)

    /// What went wrong, with the values involved.
    public var description: String {
        switch self {
        case .unknownProduct(let sku): "no product with SKU \(sku)"
        case .duplicateProduct(let sku): "a product with SKU \(sku) exists already"
        case .insufficientStock(let sku, let requested, let available):
            "\(sku): \(requested) requested, \(available) available"
        case .unknownReservation(let id): "no reservation \(id)"
        case .invalidQuantity(let quantity): "invalid quantity \(quantity): must be positive"
        case .database(let message): "database error: \(message)"
        }
    }
}
