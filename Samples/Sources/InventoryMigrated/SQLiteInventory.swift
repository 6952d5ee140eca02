import InventoryCore
public import SQLiteAdapter

/// The migrated inventory on SQLite, through the sample adapter of "Wrap your own blocking C
/// client": the same code as on PostgreSQL and MariaDB.
public typealias SQLiteInventory = MigratedInventory<SQLiteClient>

extension MigratedInventory where Database == SQLiteClient {
    /// Creates the inventory on an SQLite client, with the SQLite schema. Its transactions take
    /// the database's write lock when they begin, so no row lock is needed.
    ///
    /// - Parameters:
    ///   - client: The client, run by the caller (a `ServiceGroup` or a task).
    ///   - statementTimeout: How long one statement may run; it is interrupted then.
    public init(client: SQLiteClient, statementTimeout: Duration? = .seconds(5)) {
        self.init(
            client: client,
            schema: InventorySchema.sqlite,
            name: "migrated (SQLite)",
            rowLock: "",
            statementTimeout: statementTimeout
        )
    }
}
