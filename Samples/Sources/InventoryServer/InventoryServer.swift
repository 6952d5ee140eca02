import Foundation
public import Hummingbird
import InventoryCore
import InventoryMigrated
import InventoryWrapped
import Logging
import SampleSupport
import ServiceLifecycle
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgePostgres
import Synchronization
import Tracing

/// The HTTP service: a Hummingbird server whose handlers reach the legacy data layer (the
/// unchanged libpq and Connector/C functions) through SyncBridge's pool — or, with
/// `--form migrated`, the migrated inventory's typed SQL — with the pool, the watchdog and the
/// deadlock detector run as services of one service group. SIGTERM or Ctrl-C shuts it down
/// gracefully: the server stops accepting, finishes the requests in flight, then the pool closes
/// its connections. SIGUSR1 logs a snapshot of SyncBridge's pools, threads and waits.
///
/// `swift run InventoryServer [--port 8080] [--database postgres|mariadb] [--form wrapped|migrated]
/// [--trace]`; uses `POSTGRES_URL` or `MARIADB_URL` when set, otherwise a throwaway server.
/// `Scripts/load.sh` puts it under load; `Scripts/debug-routes.sh` shows its traces and snapshot.
///
/// Routes:
/// - `GET /products/{sku}`: the product, or 404;
/// - `POST /products/{sku}/reservations?quantity=N&order=REF`: 201 with the reservation's id;
///   409 when too few units are left;
/// - `DELETE /reservations/{id}`: 204, or 404;
/// - `GET /low-stock?below=N`: the products with fewer than N units available;
/// - `GET /health`: the watchdog's and the deadlock detector's report counts;
/// - `GET /debug/snapshot`: what SyncBridge is doing right now (`SyncBridgeSnapshot`, as JSON);
/// - `GET /debug/traces` (with `--trace`): the last requests' traces as text, each request's span
///   with the SQL spans and their waits under it.
@main
struct InventoryServer {
    static func main() async throws {
        SampleLogging.bootstrap(level: .info)
        var port = 8080
        var useMariaDB = false
        var migrated = false
        var traces: RecentTraces?
        var arguments = CommandLine.arguments.dropFirst()
        while let option = arguments.popFirst() {
            if option == "--trace" {
                traces = RecentTraces()
                continue
            }
            switch (option, arguments.popFirst()) {
            case ("--port", let value?) where Int(value) != nil: port = Int(value)!
            case ("--database", "postgres"): useMariaDB = false
            case ("--database", "mariadb"): useMariaDB = true
            case ("--form", "wrapped"): migrated = false
            case ("--form", "migrated"): migrated = true
            default:
                print(
                    "usage: InventoryServer [--port N] [--database postgres|mariadb] [--form wrapped|migrated] [--trace]"
                )
                exit(2)
            }
        }
        // Every request's span, with SyncBridge's spans under it. In production: swift-otel's
        // bootstrap, which sends them to an OpenTelemetry collector.
        if let traces { InstrumentationSystem.bootstrap(traces.tracer) }
        let logger = Logger(label: "inventory-server")
        let databases = try await SampleDatabases.start(postgres: !useMariaDB, mariaDB: useMariaDB)
        logger.info("database ready", metadata: ["origin": "\(databases.origin)"])

        // The pool: the legacy functions run on its connections' threads (or the migrated
        // inventory's statements do).
        let client: any Service & Sendable
        let inventory: any Inventory
        if useMariaDB {
            let mariaDB = MariaDBClient(configuration: try MariaDBConfiguration(url: databases.mariaDBURL))
            (client, inventory) = (mariaDB, migrated ? MariaDBInventory(client: mariaDB) : WrappedInventory(mariaDB))
        } else {
            let postgres = PostgresClient(connectionString: databases.postgresURL)
            (client, inventory) = (
                postgres, migrated ? PostgresInventory(client: postgres) : WrappedInventory(postgres)
            )
        }
        try await seed(inventory, products: 1000)

        // The watchdog and the deadlock detector, in production settings: reports go to the
        // log and to the health endpoint's counters.
        let health = Health()
        let watchdog = Watchdog(
            configuration: .init(threshold: .milliseconds(100), onReport: { _ in health.watchdogReport() })
        )
        let detector = DeadlockDetector(configuration: .init(mode: .report, onReport: { _ in health.deadlockReport() }))

        // `kill -USR1 <pid>` logs what every pool, connection thread and wait is doing.
        let dumper = SnapshotDumper(destination: .log(logger))

        let app = Application(
            router: makeRouter(inventory: inventory, health: health, traces: traces),
            configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "inventory-server"),
            services: [watchdog, detector, client, dumper] + (traces.map { [$0] } ?? []),
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

    static func seed(_ inventory: any Inventory, products: Int) async throws {
        try await inventory.resetSchema()
        for number in 0..<products {
            try await inventory.addProduct(sku: "SKU-\(number)", name: "Product \(number)", stock: 1_000_000_000)
        }
    }

    static func makeRouter(
        inventory: any Inventory,
        health: Health,
        traces: RecentTraces?
    ) -> Router<BasicRequestContext> {
        let router = Router()
        if traces != nil { router.add(middleware: TracingMiddleware()) }
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
        router.get("debug/snapshot") { _, _ -> JSONText in
            JSONText(SyncBridgeSnapshot.take().jsonString())
        }
        if let traces {
            router.get("debug/traces") { _, _ -> String in traces.text }
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

/// JSON already encoded, served as `application/json`.
struct JSONText: ResponseGenerator {
    let text: String

    init(_ text: String) {
        self.text = text
    }

    func response(from request: Request, context: some RequestContext) -> Response {
        var response = text.response(from: request, context: context)
        response.headers[.contentType] = "application/json; charset=utf-8"
        return response
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
