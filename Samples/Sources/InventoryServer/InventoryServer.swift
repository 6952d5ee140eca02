import Foundation
public import Hummingbird
import InventoryCore
import InventoryWrapped
import Logging
import SampleSupport
import ServiceLifecycle
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgePostgres
import Synchronization

/// The HTTP service: a Hummingbird server whose handlers reach the legacy data layer (the
/// unchanged libpq and Connector/C functions) through SyncBridge's pool, with the pool, the
/// watchdog and the deadlock detector run as services of one service group. SIGTERM or Ctrl-C
/// shuts it down gracefully: the server stops accepting, finishes the requests in flight, then
/// the pool closes its connections.
///
/// `swift run InventoryServer [--port 8080] [--database postgres|mariadb]`; uses `POSTGRES_URL` or
/// `MARIADB_URL` when set, otherwise a throwaway server. `Scripts/load.sh` puts it under load.
///
/// Routes:
/// - `GET /products/{sku}`: the product, or 404;
/// - `POST /products/{sku}/reservations?quantity=N&order=REF`: 201 with the reservation's id;
///   409 when too few units are left;
/// - `DELETE /reservations/{id}`: 204, or 404;
/// - `GET /low-stock?below=N`: the products with fewer than N units available;
/// - `GET /health`: the watchdog's and the deadlock detector's report counts.
@main
struct InventoryServer {
    static func main() async throws {
        SampleLogging.bootstrap(level: .info)
        var port = 8080
        var useMariaDB = false
        var arguments = CommandLine.arguments.dropFirst()
        while let option = arguments.popFirst() {
            switch (option, arguments.popFirst()) {
            case ("--port", let value?) where Int(value) != nil: port = Int(value)!
            case ("--database", "postgres"): useMariaDB = false
            case ("--database", "mariadb"): useMariaDB = true
            default:
                print("usage: InventoryServer [--port N] [--database postgres|mariadb]")
                exit(2)
            }
        }
        let logger = Logger(label: "inventory-server")
        let databases = try await SampleDatabases.start(postgres: !useMariaDB, mariaDB: useMariaDB)
        logger.info("database ready", metadata: ["origin": "\(databases.origin)"])

        // The pool: the legacy functions run on its connections' threads.
        let client: any Service & Sendable
        let inventory: WrappedInventory
        if useMariaDB {
            let mariaDB = MariaDBClient(configuration: try MariaDBConfiguration(url: databases.mariaDBURL))
            (client, inventory) = (mariaDB, WrappedInventory(mariaDB))
        } else {
            let postgres = PostgresClient(connectionString: databases.postgresURL)
            (client, inventory) = (postgres, WrappedInventory(postgres))
        }
        try await seed(inventory, products: 1000)

        // The watchdog and the deadlock detector, in production settings: reports go to the
        // log and to the health endpoint's counters.
        let health = Health()
        let watchdog = Watchdog(
            configuration: .init(threshold: .milliseconds(100), onReport: { _ in health.watchdogReport() })
        )
        let detector = DeadlockDetector(configuration: .init(mode: .report, onReport: { _ in health.deadlockReport() }))

        let app = Application(
            router: makeRouter(inventory: inventory, health: health),
            configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "inventory-server"),
            services: [watchdog, detector, client],
            logger: logger
        )
        // Services shut down in reverse order: the HTTP server first (in-flight requests finish),
        // then the pool, the detector and the watchdog.
        try await app.runService()
        await databases.stop()
        logger.info(
            "stopped",
            metadata: [
                "watchdog_reports": "\(health.counts.watchdog)", "deadlock_reports": "\(health.counts.deadlock)",
            ]
        )
    }

    static func seed(_ inventory: WrappedInventory, products: Int) async throws {
        try await inventory.resetSchema()
        for number in 0..<products {
            try await inventory.addProduct(sku: "SKU-\(number)", name: "Product \(number)", stock: 1_000_000_000)
        }
    }

    static func makeRouter(inventory: WrappedInventory, health: Health) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("products/{sku}") { _, context -> Product in
            let sku = try context.parameters.require("sku")
            guard let product = try await answering({ try await inventory.product(sku: sku) }) else {
                throw HTTPError(.notFound, message: "no product with SKU \(sku)")
            }
            return product
        }
        router.post("products/{sku}/reservations") { request, context -> EditedResponse<ReservationCreated> in
            let sku = try context.parameters.require("sku")
            guard let quantity = request.uri.queryParameters.get("quantity", as: Int.self) else {
                throw HTTPError(.badRequest, message: "the quantity query parameter must be an integer")
            }
            let order = request.uri.queryParameters.get("order") ?? "web"
            let id = try await answering { try await inventory.reserve(sku: sku, quantity: quantity, order: order) }
            return EditedResponse(status: .created, response: ReservationCreated(id: id))
        }
        router.delete("reservations/{id}") { _, context -> HTTPResponse.Status in
            let id = try context.parameters.require("id", as: Int.self)
            try await answering { try await inventory.release(reservation: id) }
            return .noContent
        }
        router.get("low-stock") { request, _ -> [Product] in
            let threshold = request.uri.queryParameters.get("below", as: Int.self) ?? 10
            return try await answering { try await inventory.lowStock(below: threshold) }
        }
        router.get("health") { _, _ -> HealthReport in
            let counts = health.counts
            return HealthReport(watchdogReports: counts.watchdog, deadlockReports: counts.deadlock)
        }
        return router
    }

    /// Runs an inventory call and turns its refusals into HTTP errors with their message.
    static func answering<Result>(_ body: () async throws -> Result) async throws -> Result {
        do {
            return try await body()
        } catch let error as InventoryError {
            switch error {
            case .unknownProduct, .unknownReservation: throw HTTPError(.notFound, message: error.description)
            case .insufficientStock, .duplicateProduct: throw HTTPError(.conflict, message: error.description)
            case .invalidQuantity: throw HTTPError(.badRequest, message: error.description)
            case .database: throw HTTPError(.internalServerError, message: error.description)
            }
        }
    }
}

struct ReservationCreated: ResponseEncodable {
    let id: Int
}

struct HealthReport: ResponseEncodable {
    let watchdogReports: Int
    let deadlockReports: Int
}

extension Product: ResponseEncodable {}

/// Counts the watchdog's and the deadlock detector's reports for `GET /health`.
final class Health: Sendable {
    private let watchdog = Atomic<Int>(0)
    private let deadlock = Atomic<Int>(0)

    func watchdogReport() { watchdog.add(1, ordering: .relaxed) }
    func deadlockReport() { deadlock.add(1, ordering: .relaxed) }
    var counts: (watchdog: Int, deadlock: Int) {
        (watchdog.load(ordering: .relaxed), deadlock.load(ordering: .relaxed))
    }
}
