import Foundation
import InventoryCore
import InventoryMigrated
import SampleSupport
import SyncBridgeMariaDB
import SyncBridgePostgres
import SyncBridgeSQL
import Testing

extension InventoryTables {
    /// What only the migrated form offers: cancellation that reaches the server, and streaming.
    @Suite("The migrated inventory: cancellation and streaming")
    struct MigratedInventoryTests {
        @Test(
            "cancelling a reservation that waits for a row lock ends it at once; nothing is reserved",
            arguments: [InventoryForm.Database.postgres, .mariaDB]
        )
        func cancelWhileWaitingForALock(database: InventoryForm.Database) async throws {
            let databases = try await SampleDatabases.shared()
            let holder = try #require(try Holder(database, databases))
            let inventory = holder.inventory
            try await inventory.resetSchema()
            try await inventory.addProduct(sku: "HOT", name: "Popular", stock: 10)

            // Another transaction locks the row until the test lets go.
            let (locked, lockedContinuation) = AsyncStream<Void>.makeStream()
            let (release, releaseContinuation) = AsyncStream<Void>.makeStream()
            let lockHolder = Task {
                try await holder.holdRowLock(sku: "HOT") {
                    lockedContinuation.yield()
                    for await _ in release { break }
                }
            }
            for await _ in locked { break }

            let reservation = Task { try await inventory.reserve(sku: "HOT", quantity: 1, order: "cancelled") }
            try await holder.waitUntilALockWaitIsSeen()
            let cancelledAt = ContinuousClock.now
            reservation.cancel()
            await #expect(throws: CancellationError.self) { _ = try await reservation.value }
            #expect(
                ContinuousClock.now - cancelledAt < .seconds(5),
                "the reservation gave up only when the lock was released"
            )

            releaseContinuation.yield()
            try await lockHolder.value
            #expect(try await inventory.product(sku: "HOT")?.reserved == 0)
            // The pool still works: the connection that ran the cancelled statement is usable or replaced.
            _ = try await inventory.reserve(sku: "HOT", quantity: 2, order: "after")
            #expect(try await inventory.product(sku: "HOT")?.reserved == 2)
            await holder.shutdown()
        }

        @Test("allProducts streams every product in SKU order")
        func streaming() async throws {
            let databases = try await SampleDatabases.shared()
            let client = PostgresClient(connectionString: databases.postgresURL)
            let inventory = PostgresInventory(client: client)
            try await inventory.resetSchema()
            let skus = (0..<2500).map { String(format: "SKU-%05d", $0) }
            try await client.execute(
                "INSERT INTO products (sku, name, stock) SELECT s, 'streamed', 1 FROM unnest(\(skus)::text[]) AS s"
            )
            var streamed: [String] = []
            for try await product in try await inventory.allProducts() {
                streamed.append(product.sku)
            }
            #expect(streamed == skus)
            await client.shutdown()
        }
    }
}

/// The migrated inventory on one database, with the raw statements the cancellation test needs.
private struct Holder: Sendable {
    let inventory: any Inventory
    private let postgres: PostgresClient?
    private let mariaDB: MariaDBClient?

    /// `nil` for SQLite: a statement waiting in SQLite's busy handler for another connection's
    /// write lock is not interrupted until the busy timeout, so this test does not apply.
    init?(_ database: InventoryForm.Database, _ databases: SampleDatabases) throws {
        switch database {
        case .sqlite:
            return nil
        case .postgres:
            let client = PostgresClient(connectionString: databases.postgresURL)
            (postgres, mariaDB, inventory) = (client, nil, PostgresInventory(client: client))
        case .mariaDB:
            let client = MariaDBClient(configuration: try MariaDBConfiguration(url: databases.mariaDBURL))
            (postgres, mariaDB, inventory) = (nil, client, MariaDBInventory(client: client))
        }
    }

    /// Locks the product's row in a transaction of its own while `body` runs.
    func holdRowLock(sku: String, while body: @Sendable () async -> Void) async throws {
        if let postgres {
            try await postgres.withTransaction { connection in
                try await connection.query("SELECT stock FROM products WHERE sku = \(sku) FOR UPDATE")
                await body()
            }
        } else if let mariaDB {
            try await mariaDB.withTransaction { connection in
                try await connection.query("SELECT stock FROM products WHERE sku = \(sku) FOR UPDATE")
                await body()
            }
        }
    }

    /// Returns once the server shows a statement waiting for a row lock (deadline 10 s).
    func waitUntilALockWaitIsSeen() async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let waiting: Int
            if let postgres {
                waiting = try await postgres.query(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                )[0].decode(Int.self, at: 0)
            } else {
                // The reservation's locking read is running while the other transaction, idle,
                // holds the lock: it waits for it.
                waiting = try await mariaDB!.query(
                    """
                    SELECT count(*) FROM information_schema.PROCESSLIST
                    WHERE COMMAND IN ('Query', 'Execute') AND INFO LIKE '%stock - reserved%FOR UPDATE%' AND INFO NOT LIKE '%PROCESSLIST%'
                    """
                )[0].decode(Int.self, at: 0)
            }
            if waiting > 0 { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("no statement waited for the row lock within 10 s")
    }

    func shutdown() async {
        await postgres?.shutdown()
        await mariaDB?.shutdown()
    }
}
