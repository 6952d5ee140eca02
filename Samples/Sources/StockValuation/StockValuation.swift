import CLibPQ
import InventoryCore
public import SyncBridgePostgres

/// The sample for running the watchdog in tests: a heavy report query, called the legacy way (a
/// blocking libpq call straight from async code) and the offloaded way (the same call on a
/// pooled connection's thread). `StockValuationTests` shows the watchdog trait failing the first
/// and passing the second.
public enum StockValuation {
    /// The report's statement: it scans three million generated rows on the server, a few hundred
    /// milliseconds of work, as month-end reports do.
    static let query = "SELECT count(*) FROM generate_series(1, 3000000) AS g WHERE g % 7 = 0"

    /// The report's result: the statement's count.
    public static let expectedValue = 3_000_000 / 7

    /// The legacy function: blocks the calling thread until the server answers.
    ///
    /// - Parameter connection: A libpq `PGconn*`.
    /// - Throws: ``InventoryError/database(_:)`` with libpq's message.
    public static func compute(_ connection: OpaquePointer) throws -> Int {
        guard let result = PQexec(connection, query) else {
            throw InventoryError.database(String(cString: PQerrorMessage(connection)))
        }
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_TUPLES_OK else {
            throw InventoryError.database(String(cString: PQresultErrorMessage(result)))
        }
        return Int(String(cString: PQgetvalue(result, 0, 0))) ?? -1
    }

    /// Before: an async handler that calls the legacy function directly. It works, and it holds a
    /// cooperative thread for the whole query: the watchdog reports it.
    ///
    /// - Parameter connection: The legacy program's global `PGconn*`.
    public static func legacyHandler(connection: OpaquePointer) async throws -> Int {
        try compute(connection)
    }

    /// After: the same legacy function, unchanged, on a pooled connection's own thread. The task
    /// awaits; no cooperative thread waits for the server.
    public static func handler(client: PostgresClient) async throws -> Int {
        try await client.withRawConnection { try compute($0) }
    }
}
