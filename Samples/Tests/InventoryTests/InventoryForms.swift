import InventoryCore
import InventoryLegacy
import InventoryMigrated
import InventoryWrapped
import SQLiteAdapter
import SampleSupport
import ServiceLifecycle
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgePostgres
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One form of the service (legacy, wrapped, migrated) on one database: what each behavioural test
/// runs against. SQLite, through the sample adapter of "Wrap your own blocking C client", has the
/// migrated form only: there is no legacy SQLite program to wrap.
struct InventoryForm: Sendable, CustomTestStringConvertible {
    enum Stage: String, Sendable, CaseIterable { case legacy, wrapped, migrated }
    enum Database: String, Sendable, CaseIterable {
        case postgres = "PostgreSQL"
        case mariaDB = "MariaDB"
        case sqlite = "SQLite"
    }

    let stage: Stage
    let database: Database

    static let all: [InventoryForm] = Stage.allCases.flatMap { stage in
        Database.allCases.filter { $0 != .sqlite || stage == .migrated }.map {
            InventoryForm(stage: stage, database: $0)
        }
    }

    var testDescription: String { "\(stage.rawValue) (\(database.rawValue))" }

    /// Runs `body` with this form on a fresh, empty schema; the clients are running meanwhile and
    /// shut down afterwards.
    func withInventory(_ body: @Sendable (any Inventory) async throws -> Void) async throws {
        let databases = try await SampleDatabases.shared()
        switch (stage, database) {
        case (.legacy, .postgres):
            try await run(
                LegacyInventory(
                    // check-blocking: allow the test's set-up: one connection before the calls it checks
                    store: try LegacyInventoryStore(postgres: databases.postgresURL),
                    callers: legacyCallers
                ),
                body
            )
        case (.legacy, .mariaDB):
            try await run(
                // check-blocking: allow the test's set-up: one connection before the calls it checks
                LegacyInventory(store: try LegacyInventoryStore(mariaDB: databases.mariaDBURL), callers: legacyCallers),
                body
            )
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
        case (.migrated, .sqlite):
            let path = "/tmp/syncbridge-inventory-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).sqlite"
            defer { for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) } }
            let client = SQLiteClient(configuration: .init(path: path))
            try await run(SQLiteInventory(client: client), service: client, body)
        case (.legacy, .sqlite), (.wrapped, .sqlite):
            Issue.record("SQLite has no \(stage) form")
        }
    }

    private func run(
        _ inventory: any Inventory,
        service: (any Service)? = nil,
        _ body: @Sendable (any Inventory) async throws -> Void
    ) async throws {
        // A client runs until cancelled, then shuts its pool down.
        try await withThrowingTaskGroup { group in
            if let service { group.addTask { try await service.run() } }
            defer { group.cancelAll() }
            try await inventory.resetSchema()
            try await body(inventory)
        }
    }
}

/// The threads that call the legacy store in the tests, as the legacy program's own threads do
/// (a pool of 8, like a thread-per-request server's workers): the behavioural tests check the
/// legacy behaviour without blocking the cooperative pool, which would stall the tests that run
/// beside them. The demo shows what calling it from tasks does.
let legacyCallers = BlockingPool(name: "legacy-callers", threadCount: 8)
