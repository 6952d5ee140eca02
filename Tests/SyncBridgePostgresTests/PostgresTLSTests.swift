import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

@Suite("PostgreSQL over verified TLS")
struct PostgresTLSTests {
    @Test(
        "with sslmode=verify-full: queries run encrypted (the server says so), a cancel stops a statement, and a certificate from another authority is refused with a typed error"
    )
    func verifiedTLS() async throws {
        let certificates = try await TemporaryCertificates.generate()
        defer { certificates.delete() }
        let stop: @Sendable (TemporaryPostgres) async -> Void = { await $0.stop() }
        try await withServer(try await TemporaryPostgres.start(tls: certificates), stop: stop) { server in
            try await check(server, certificates)
        }
    }

    private func check(_ server: TemporaryPostgres, _ certificates: TemporaryCertificates) async throws {
        func connectionString(host: String, authority: String) -> String {
            "host=\(host) port=\(server.port) dbname=\(server.database) user=\(server.user) "
                + "password=\(server.password) sslmode=verify-full sslrootcert=\(authority)"
        }
        // The certificate names both; verify-full checks the name the client connected to.
        for host in ["localhost", "127.0.0.1"] {
            let connection = try await PostgresConnection.connect(
                connectionString(host: host, authority: certificates.authorityFile)
            )
            let row = try #require(
                try await connection.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").first
            )
            #expect(try row.decode(Bool.self, at: 0), "the server sees an unencrypted session from \(host)")
            #expect(try row.decode(String.self, at: 1).hasPrefix("TLSv1."))
            await connection.close()
        }

        // A cancel reaches the server (libpq 17's encrypted cancel connection where available,
        // PQcancel otherwise) and stops the statement; the session goes on.
        let connection = try await PostgresConnection.connect(
            connectionString(host: "localhost", authority: certificates.authorityFile)
        )
        let pid = try #require(try await connection.query("SELECT pg_backend_pid()").first).decode(Int32.self, at: 0)
        let observer = try await PostgresConnection.connect(server.connectionString)
        let sleeping = Task { try await connection.query("SELECT pg_sleep(60)") }
        try await waitUntil(20) {
            try await observer.query(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = \(pid) AND state = 'active' AND query LIKE 'SELECT pg_sleep%'"
            ).first?.decode(Int.self, at: 0) == 1
        }
        let cancelled = ContinuousClock.now
        sleeping.cancel()
        await #expect(throws: CancellationError.self) { try await sleeping.value }
        #expect(ContinuousClock.now - cancelled < .seconds(10 * slowdown))
        #expect(try await connection.query("SELECT 1").first?.decode(Int.self, at: 0) == 1)
        await connection.close()
        await observer.close()

        // A certificate the client's authority did not sign: refused before anything is sent.
        let stranger = try await TemporaryCertificates.generate()
        defer { stranger.delete() }
        let refused = try await #require(throws: PostgresError.self) {
            try await PostgresConnection.connect(connectionString(host: "localhost", authority: stranger.authorityFile))
        }
        #expect(refused.kind == .connectionFailed)
        #expect(refused.message.contains("certificate verify failed"), "\(refused)")
        #expect(!"\(refused)".contains(server.password))
    }
}
