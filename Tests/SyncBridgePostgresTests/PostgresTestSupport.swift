import Foundation
import SharedTestSupport
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
    try await withClosing(connectToTestServer(), body)
}
