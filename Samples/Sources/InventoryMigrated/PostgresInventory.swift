import InventoryCore
public import SyncBridgePostgres

/// The migrated inventory on PostgreSQL.
public typealias PostgresInventory = MigratedInventory<PostgresClient>

extension MigratedInventory where Database == PostgresClient {
    /// Creates the inventory on a PostgreSQL client, with the PostgreSQL schema.
    ///
    /// - Parameters:
    ///   - client: The client, run by the caller (a `ServiceGroup` or a task).
    ///   - statementTimeout: How long one statement may run; the server cancels it then.
    public init(client: PostgresClient, statementTimeout: Duration? = .seconds(5)) {
        self.init(
            client: client,
            schema: InventorySchema.postgres,
            name: "migrated (PostgreSQL)",
            statementTimeout: statementTimeout
        )
    }
}
