import CLibPQ
import CMariaDB
import Foundation
import InventoryCore
import InventoryLegacy
import SampleSupport
import Synchronization

/// Another program writing to the same tables, as production databases have: twice a second it
/// restocks 20 random products in one transaction that keeps their rows locked for 200 ms while
/// it reads the supplier's feed. A reservation of one of those products waits for the lock.
///
/// It runs on a thread of its own with its own connection, like the separate process it stands
/// for; the demo's modes differ in what such a wait does to everything else.
final class WarehouseSync: Sendable {
    private let running = Atomic<Bool>(true)
    private let products: Int

    /// Starts the job against PostgreSQL or MariaDB.
    init(database: Database, databases: SampleDatabases, products: Int) throws {
        self.products = products
        let connection = try RawConnection(database: database, databases: databases)
        let thread = Thread { [self] in
            while running.load(ordering: .relaxed) {
                let skus = (0..<20).map { _ in "'SKU-\(Int.random(in: 0..<self.products))'" }.joined(separator: ", ")
                connection.execute("BEGIN")
                connection.execute("UPDATE products SET stock = stock + 1 WHERE sku IN (\(skus))")
                Thread.sleep(forTimeInterval: 0.2)  // reading the supplier's feed, rows locked
                connection.execute("COMMIT")
                Thread.sleep(forTimeInterval: 0.3)
            }
            connection.close()
        }
        thread.name = "warehouse-sync"
        thread.start()
    }

    /// Stops the job after its current transaction.
    func stop() {
        running.store(false, ordering: .relaxed)
    }
}

/// A raw libpq or Connector/C connection, used by the job's thread alone.
private final class RawConnection: @unchecked Sendable {
    // Safe to send: created by the demo, then used by the job's thread alone.
    private let postgres: OpaquePointer?
    private let mariaDB: UnsafeMutablePointer<MYSQL>?

    init(database: Database, databases: SampleDatabases) throws {
        switch database {
        case .postgres:
            (postgres, mariaDB) = (try PostgresInventorySQL.connect(databases.postgresURL), nil)
        case .mariaDB:
            (postgres, mariaDB) = (nil, try MariaDBInventorySQL.connect(url: databases.mariaDBURL))
        }
    }

    /// Runs a statement; the job ignores failures (a failed batch is retried half a second later).
    func execute(_ sql: String) {
        if let postgres {
            PQclear(PQexec(postgres, sql))
        } else if let mariaDB {
            if mysql_query(mariaDB, sql == "BEGIN" ? "START TRANSACTION" : sql) == 0 {
                mysql_free_result(mysql_store_result(mariaDB))
            }
        }
    }

    func close() {
        if let postgres { PQfinish(postgres) }
        if let mariaDB { mysql_close(mariaDB) }
    }
}
