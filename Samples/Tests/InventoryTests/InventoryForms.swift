import InventoryCore
import InventoryLegacy
import InventoryMigrated
import InventoryWrapped
import SampleSupport
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgePostgres
import Testing

/// One form of the service (legacy, wrapped, migrated) on one database: what each behavioural test
/// runs against.
struct InventoryForm: Sendable, CustomTestStringConvertible {
    enum Stage: String, Sendable, CaseIterable { case legacy, wrapped, migrated }
    enum Database: String, Sendable, CaseIterable { case postgres = "PostgreSQL", mariaDB = "MariaDB" }

    let stage: Stage
    let database: Database

    static let all: [InventoryForm] = Stage.allCases.flatMap { stage in
        Database.allCases.map { InventoryForm(stage: stage, database: $0) }
    }

    var testDescription: String { "\(stage.rawValue) (\(database.rawValue))" }

    /// Runs `body` with this form on a fresh, empty schema; the clients are running meanwhile and
    /// shut down afterwards.
    func withInventory(_ body: @Sendable (any Inventory) async throws -> Void) async throws {
        let databases = try await SampleDatabases.shared()
        switch (stage, database) {
        case (.legacy, .postgres):
            try await run(LegacyCallers(store: try LegacyInventoryStore(postgres: databases.postgresURL)), body)
        case (.legacy, .mariaDB):
            try await run(LegacyCallers(store: try LegacyInventoryStore(mariaDB: databases.mariaDBURL)), body)
        case (.wrapped, .postgres):
            let client = PostgresClient(connectionString: databases.postgresURL)
            try await run(WrappedInventory(client), service: client, body)
        case (.wrapped, .mariaDB):
            let client = MariaDBClient(configuration: try MariaDBConfiguration(url: databases.mariaDBURL))
            try await run(WrappedInventory(client), service: client, body)
        case (.migrated, .postgres):
            let client = PostgresClient(connectionString: databases.postgresURL)
            try await run(PostgresInventory(client: client), service: client, body)
        case (.migrated, .mariaDB):
            let client = MariaDBClient(configuration: try MariaDBConfiguration(url: databases.mariaDBURL))
            try await run(MariaDBInventory(client: client), service: client, body)
        }
    }

    private func run(
        _ inventory: any Inventory,
        service: (any DatabaseClient)? = nil,
        _ body: @Sendable (any Inventory) async throws -> Void
    ) async throws {
        try await withThrowingTaskGroup { group in
            if let service { group.addTask { try await service.run() } }
            do {
                try await inventory.resetSchema()
                try await body(inventory)
            } catch {
                group.cancelAll()
                await service?.shutdown()
                throw error
            }
            group.cancelAll()
            await service?.shutdown()
            try await group.waitForAll()
        }
    }
}

/// What the tests need of a client: to run it and to shut it down.
protocol DatabaseClient: Sendable {
    func run() async throws
    func shutdown() async
}

extension PostgresClient: DatabaseClient {}
extension MariaDBClient: DatabaseClient {}

/// The legacy store called the way the legacy program calls it: from threads of its own (here a
/// pool of 8, like a thread-per-request server's workers), never from a cooperative thread. The
/// tests thereby check the legacy behaviour without blocking the cooperative pool, which would
/// stall the tests that run beside them (the demo shows what calling it from tasks does).
struct LegacyCallers: Inventory {
    let store: LegacyInventoryStore
    static let threads = BlockingPool(name: "legacy-callers", threadCount: 8)

    var name: String { "legacy (\(store.databaseName))" }

    func resetSchema() async throws {
        try await Self.threads.run { [store] in try store.resetSchema() }
    }

    func addProduct(sku: String, name: String, stock: Int) async throws {
        try await Self.threads.run { [store] in try store.addProduct(sku: sku, name: name, stock: stock) }
    }

    func product(sku: String) async throws -> Product? {
        try await Self.threads.run { [store] in try store.product(sku: sku) }
    }

    func reserve(sku: String, quantity: Int, order: String) async throws -> Int {
        try await Self.threads.run { [store] in try store.reserve(sku: sku, quantity: quantity, order: order) }
    }

    func release(reservation: Int) async throws {
        try await Self.threads.run { [store] in try store.release(reservation: reservation) }
    }

    func restock(sku: String, quantity: Int) async throws {
        try await Self.threads.run { [store] in try store.restock(sku: sku, quantity: quantity) }
    }

    func lowStock(below threshold: Int) async throws -> [Product] {
        try await Self.threads.run { [store] in try store.lowStock(below: threshold) }
    }
}
