public import InventoryCore
public import SyncBridgeSQL

extension Product {
    /// Decodes the columns `sku, name, stock, reserved`.
    ///
    /// - Throws: `SQLDecodingError` naming the column whose value does not fit.
    public init(row: SQLRow) throws {
        let (sku, name, stock, reserved) = try row.decode((String, String, Int, Int).self)
        self.init(sku: sku, name: name, stock: stock, reserved: reserved)
    }
}
