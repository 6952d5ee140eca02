import CLibPQ
import Dispatch
import NIOCore
import StockValuation
public import SyncBridge
import SyncBridgeNIO
public import SyncBridgePostgres
public import Vapor

/// The legacy program's report database: one global libpq connection, opened at start-up, and a
/// semaphore through which callers take their turn on it.
public final class LegacyValuationDatabase: @unchecked Sendable {
    // Safe to share: `connection` is used only between the gate's wait and signal, so one thread
    // at a time uses it; both stored properties are immutable.
    private let connection: OpaquePointer
    private let gate = DispatchSemaphore(value: 1)

    /// Connects, blocking the calling thread (the legacy program does it at start-up).
    ///
    /// - Parameter connectionString: A libpq connection string or `postgres://` URL.
    public init(connectionString: String) throws {
        guard let connection = PQconnectdb(connectionString), PQstatus(connection) == CONNECTION_OK else {
            throw Abort(.internalServerError, reason: "the report database is unreachable")
        }
        self.connection = connection
    }

    deinit { PQfinish(connection) }

    /// The month-end stock valuation: blocks the calling thread for the whole query (a few
    /// hundred milliseconds).
    public func stockValuation() throws -> Int {
        gate.wait()
        defer { gate.signal() }
        return try StockValuation.compute(connection)
    }
}

/// The same report in the three forms of MIGRATION.md's "Future-based code" path:
///
/// - `GET /valuation/legacy`: the Vapor 4 route as it was written before async/await, a future
///   chain that calls the legacy database synchronously inside `flatMapThrowing`. It works, and
///   it blocks the request's event loop — and every connection that loop serves — for the whole
///   query: the event-loop watchdog reports it, with the route's frames.
/// - `GET /valuation/offloaded`: the same chain and the same legacy call, moved onto a
///   `BlockingPool` with `runIfActive(eventLoop:)`; the loop is free while the query runs.
/// - `GET /valuation/migrated`: an async route over the facade's pooled client.
///
/// - Parameters:
///   - app: The application.
///   - legacy: The legacy program's global connection.
///   - legacyCallers: The threads that call the legacy database in the offloaded form.
///   - client: The pooled PostgreSQL client of the migrated form.
public func registerValuationRoutes(
    on app: Application,
    legacy: LegacyValuationDatabase,
    legacyCallers: BlockingPool,
    client: PostgresClient
) {
    // Before: the blocking call runs inside the future chain, on the event loop.
    app.get("valuation", "legacy") { request -> EventLoopFuture<String> in
        request.eventLoop.makeSucceededVoidFuture().flatMapThrowing {
            String(try legacy.stockValuation())
        }
    }

    // Offloaded: the same chain and the same legacy call, on a BlockingPool thread; the future
    // completes on the request's loop.
    app.get("valuation", "offloaded") { request -> EventLoopFuture<String> in
        legacyCallers.runIfActive(eventLoop: request.eventLoop) {
            String(try legacy.stockValuation())
        }
    }

    // Migrated: async, with a typed query on the pooled client.
    app.get("valuation", "migrated") { _ async throws -> String in
        let rows = try await client.query(
            "SELECT count(*) FROM generate_series(1, 3000000) AS g WHERE g % 7 = 0",
            timeout: .seconds(30)
        )
        return String(try rows[0].decode(Int.self, at: 0))
    }
}
