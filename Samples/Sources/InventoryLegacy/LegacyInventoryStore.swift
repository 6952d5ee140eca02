import CLibPQ
public import CMariaDB
import Dispatch
public import InventoryCore
public import SyncBridge

/// The legacy inventory service: one connection for the whole process, opened at start-up, and a
/// semaphore through which every caller (thread or task) takes its turn on it.
///
/// This is the shape the migration starts from. Called from threads, as the legacy program does,
/// it works. Called from tasks (``LegacyInventory``), each call holds a cooperative thread while
/// it waits for the semaphore and for the server: the watchdog reports the blocked pool and
/// every other task of the process waits.
///
/// ```swift
/// let store = try LegacyInventoryStore(postgres: "postgres://app@db/inventory")
/// let id = try store.reserve(sku: "SKU-1", quantity: 2, order: "order-7")
/// ```
public final class LegacyInventoryStore: @unchecked Sendable {
    // Safe to share: `connection` is used only between the gate's wait and signal, so one thread
    // at a time uses it; the other stored properties are immutable.

    /// The connection's raw handle.
    public enum Connection {
        /// A libpq `PGconn*`.
        case postgres(OpaquePointer)
        /// A Connector/C `MYSQL*`.
        case mariaDB(UnsafeMutablePointer<MYSQL>)
    }

    /// How callers take their turn on the connection.
    public enum Gate: Sendable {
        /// The legacy program's `DispatchSemaphore(value: 1)`.
        case dispatchSemaphore
        /// SyncBridge's `GuardedSemaphore(value: 1)`, step 2 of MIGRATION.md: the same semaphore,
        /// but a wait on a cooperative thread throws `GuardedWaitError` (and the deadlock detector
        /// reports the call site) instead of blocking the pool.
        case guardedSemaphore
    }

    /// The database: `PostgreSQL` or `MariaDB`.
    public let databaseName: String
    private let connection: Connection
    private let dispatchGate: DispatchSemaphore?
    private let guardedGate: GuardedSemaphore?

    /// Connects to PostgreSQL.
    ///
    /// - Parameters:
    ///   - postgres: A libpq connection string or `postgres://` URL.
    ///   - gate: How callers take turns; the legacy program's `DispatchSemaphore` by default.
    public convenience init(postgres: String, gate: Gate = .dispatchSemaphore) throws {
        self.init(
            connection: .postgres(try PostgresInventorySQL.connect(postgres)),
            databaseName: "PostgreSQL",
            gate: gate
        )
    }

    /// Connects to MariaDB.
    ///
    /// - Parameters:
    ///   - mariaDB: A `mariadb://user:password@host:port/database` URL.
    ///   - gate: How callers take turns; the legacy program's `DispatchSemaphore` by default.
    public convenience init(mariaDB: String, gate: Gate = .dispatchSemaphore) throws {
        self.init(
            connection: .mariaDB(try MariaDBInventorySQL.connect(url: mariaDB)),
            databaseName: "MariaDB",
            gate: gate
        )
    }

    private init(connection: Connection, databaseName: String, gate: Gate) {
        self.connection = connection
        self.databaseName = databaseName
        switch gate {
        case .dispatchSemaphore:
            dispatchGate = DispatchSemaphore(value: 1)
            guardedGate = nil
        case .guardedSemaphore:
            dispatchGate = nil
            guardedGate = GuardedSemaphore(value: 1, name: "legacy inventory connection")
        }
    }

    deinit {
        switch connection {
        case .postgres(let handle): PQfinish(handle)
        case .mariaDB(let handle): mysql_close(handle)
        }
    }

    /// Runs `body` with the connection once it is this caller's turn.
    private func withTurn<T>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: (Connection) throws -> T
    ) throws -> T {
        if let guardedGate {
            try guardedGate.wait(fileID: fileID, line: line)
        } else {
            dispatchGate?.wait()
        }
        defer {
            guardedGate?.signal()
            dispatchGate?.signal()
        }
        return try body(connection)
    }

    /// Drops and creates the tables.
    public func resetSchema() throws {
        try withTurn {
            switch $0 {
            case .postgres(let handle): try PostgresInventorySQL.resetSchema(handle)
            case .mariaDB(let handle): try MariaDBInventorySQL.resetSchema(handle)
            }
        }
    }

    /// Adds a product.
    public func addProduct(sku: String, name: String, stock: Int) throws {
        try withTurn {
            switch $0 {
            case .postgres(let handle): try PostgresInventorySQL.addProduct(handle, sku: sku, name: name, stock: stock)
            case .mariaDB(let handle): try MariaDBInventorySQL.addProduct(handle, sku: sku, name: name, stock: stock)
            }
        }
    }

    /// The product with this SKU, or `nil`.
    public func product(sku: String) throws -> Product? {
        try withTurn {
            switch $0 {
            case .postgres(let handle): try PostgresInventorySQL.product(handle, sku: sku)
            case .mariaDB(let handle): try MariaDBInventorySQL.product(handle, sku: sku)
            }
        }
    }

    /// Reserves units for an order; returns the reservation's id.
    public func reserve(sku: String, quantity: Int, order: String) throws -> Int {
        try withTurn {
            switch $0 {
            case .postgres(let handle):
                try PostgresInventorySQL.reserve(handle, sku: sku, quantity: quantity, order: order)
            case .mariaDB(let handle):
                try MariaDBInventorySQL.reserve(handle, sku: sku, quantity: quantity, order: order)
            }
        }
    }

    /// Releases a reservation.
    public func release(reservation: Int) throws {
        try withTurn {
            switch $0 {
            case .postgres(let handle): try PostgresInventorySQL.release(handle, reservation: reservation)
            case .mariaDB(let handle): try MariaDBInventorySQL.release(handle, reservation: reservation)
            }
        }
    }

    /// Adds units to a product's stock.
    public func restock(sku: String, quantity: Int) throws {
        try withTurn {
            switch $0 {
            case .postgres(let handle): try PostgresInventorySQL.restock(handle, sku: sku, quantity: quantity)
            case .mariaDB(let handle): try MariaDBInventorySQL.restock(handle, sku: sku, quantity: quantity)
            }
        }
    }

    /// The products with fewer than `threshold` units available, by SKU.
    public func lowStock(below threshold: Int) throws -> [Product] {
        try withTurn {
            switch $0 {
            case .postgres(let handle): try PostgresInventorySQL.lowStock(handle, below: threshold)
            case .mariaDB(let handle): try MariaDBInventorySQL.lowStock(handle, below: threshold)
            }
        }
    }
}

/// The legacy store behind the async ``Inventory`` interface.
///
/// Without `callers`, the way teams often start: the methods are marked `async` and call the
/// blocking code directly, on whatever cooperative thread the task runs on. It behaves correctly,
/// and it is what the watchdog and the deadlock detector exist to find (the demo runs it so).
/// With `callers`, each call runs on one of that pool's threads, as the legacy program's own
/// threads call the store (the behavioural tests run it so, without blocking the cooperative pool).
public struct LegacyInventory: Inventory {
    /// The store every call goes to.
    public let store: LegacyInventoryStore
    /// The threads that call the store, or `nil` for the calling task's own thread.
    public let callers: BlockingPool?

    /// Wraps a store.
    ///
    /// - Parameters:
    ///   - store: The legacy store.
    ///   - callers: Threads to call it from; `nil` calls it from the calling task's thread.
    public init(store: LegacyInventoryStore, callers: BlockingPool? = nil) {
        self.store = store
        self.callers = callers
    }

    /// `legacy (PostgreSQL)`.
    public var name: String { "legacy (\(store.databaseName))" }

    /// Calls the store from `callers`, or right here.
    private func call<Result: Sendable>(
        _ body: @escaping @Sendable (LegacyInventoryStore) throws -> Result
    ) async throws -> Result {
        let store = self.store
        guard let callers else { return try body(store) }
        return try await callers.run { try body(store) }
    }

    /// See ``Inventory/resetSchema()``.
    public func resetSchema() async throws { try await call { try $0.resetSchema() } }

    /// See ``Inventory/addProduct(sku:name:stock:)``.
    public func addProduct(sku: String, name: String, stock: Int) async throws {
        try await call { try $0.addProduct(sku: sku, name: name, stock: stock) }
    }

    /// See ``Inventory/product(sku:)``.
    public func product(sku: String) async throws -> Product? { try await call { try $0.product(sku: sku) } }

    /// See ``Inventory/reserve(sku:quantity:order:)``.
    public func reserve(sku: String, quantity: Int, order: String) async throws -> Int {
        try await call { try $0.reserve(sku: sku, quantity: quantity, order: order) }
    }

    /// See ``Inventory/release(reservation:)``.
    public func release(reservation: Int) async throws { try await call { try $0.release(reservation: reservation) } }

    /// See ``Inventory/restock(sku:quantity:)``.
    public func restock(sku: String, quantity: Int) async throws {
        try await call { try $0.restock(sku: sku, quantity: quantity) }
    }

    /// See ``Inventory/lowStock(below:)``.
    public func lowStock(below threshold: Int) async throws -> [Product] {
        try await call { try $0.lowStock(below: threshold) }
    }
}
