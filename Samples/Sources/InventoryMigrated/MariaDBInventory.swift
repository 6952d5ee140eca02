import InventoryCore
public import SyncBridgeMariaDB

/// The migrated inventory on MariaDB.
public typealias MariaDBInventory = MigratedInventory<MariaDBClient>

extension MigratedInventory where Database == MariaDBClient {
    /// Creates the inventory on a MariaDB client, with the MariaDB schema.
    ///
    /// - Parameters:
    ///   - client: The client, run by the caller (a `ServiceGroup` or a task).
    ///   - statementTimeout: How long one statement may run; the server cancels it then.
    public init(client: MariaDBClient, statementTimeout: Duration? = .seconds(5)) {
        self.init(
            client: client,
            schema: InventorySchema.mariaDB,
            name: "migrated (MariaDB)",
            statementTimeout: statementTimeout
        )
    }
}
