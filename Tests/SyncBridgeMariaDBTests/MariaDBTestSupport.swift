import Foundation
import SharedTestSupport
import SyncBridgeMariaDB
import SyncBridgeSQL
import SyncBridgeTesting

/// The configuration of the process's shared throwaway server.
func testConfiguration() async throws -> MariaDBConfiguration {
    writeSnapshotsIfAsked()
    return configuration(for: try await TemporaryMariaDB.shared())
}

/// A TCP configuration for `server`, as its user.
func configuration(for server: TemporaryMariaDB) -> MariaDBConfiguration {
    MariaDBConfiguration(
        host: server.host,
        port: server.port,
        user: server.user,
        password: server.password,
        database: server.database
    )
}

/// Connects to the process's shared throwaway server.
func connectToTestServer() async throws -> MariaDBConnection {
    try await MariaDBConnection.connect(configuration: testConfiguration())
}

/// Runs `body` with a fresh connection and closes it afterwards.
func withTestConnection<T: Sendable>(_ body: (MariaDBConnection) async throws -> T) async throws -> T {
    try await withClosing(connectToTestServer(), body)
}
