import Foundation
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting

/// Connects to the process's shared throwaway server.
func connectToTestServer() async throws -> PostgresConnection {
    let server = try await TemporaryPostgres.shared()
    return try await PostgresConnection.connect(server.connectionString)
}

/// Runs `body` with a fresh connection and closes it afterwards.
func withTestConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
    let connection = try await connectToTestServer()
    do {
        let result = try await body(connection)
        await connection.close()
        return result
    } catch {
        await connection.close()
        throw error
    }
}

/// A table name unique to one test, so that tests running in parallel never share tables.
func uniqueTable(_ prefix: String) -> String {
    "\(prefix)_\(UInt32.random(in: 0...UInt32.max))"
}

/// How much slower than normal this process runs: 10 under ThreadSanitizer (whose runtime is
/// loaded when `__tsan_init` resolves), which slows code 5 to 15 times; 1 otherwise. Latency
/// bounds in tests are multiplied by it.
let slowdown: Int64 = dlsym(dlopen(nil, RTLD_NOW), "__tsan_init") != nil ? 10 : 1
