import Testing
import InventoryCore
import SampleSupport
import InventoryLegacy
import InventoryMigrated
import InventoryWrapped
import SyncBridgeMariaDB
import SyncBridgePostgres

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
            try await run(LegacyInventory(store: try LegacyInventoryStore(postgres: databases.postgresURL)), body)
        case (.legacy, .mariaDB):
            try await run(LegacyInventory(store: try LegacyInventoryStore(mariaDB: databases.mariaDBURL)), body)
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
