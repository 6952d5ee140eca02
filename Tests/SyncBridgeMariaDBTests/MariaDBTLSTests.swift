import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

@Suite("MariaDB over verified TLS")
struct MariaDBTLSTests {
    @Test(
        "with verify-identity: queries run encrypted (the server says so), a cancel stops a statement, and a certificate from another authority is refused with a typed error"
    )
    func verifiedTLS() async throws {
        let certificates = try await TemporaryCertificates.generate()
        defer { certificates.delete() }
        let stop: @Sendable (TemporaryMariaDB) async -> Void = { await $0.stop() }
        try await withServer(try await TemporaryMariaDB.start(tls: certificates), stop: stop) { server in
            try await check(server, certificates)
        }
    }

    private func check(_ server: TemporaryMariaDB, _ certificates: TemporaryCertificates) async throws {
        func configuration(host: String, authority: String) -> MariaDBConfiguration {
            MariaDBConfiguration(
                host: host,
                port: server.port,
                user: server.user,
                password: server.password,
                database: server.database,
                tls: .verifyIdentity(certificateAuthorityFile: authority)
            )
        }
        // The certificate names both; verify-identity checks the name the client connected to.
        for host in ["localhost", "127.0.0.1"] {
            let connection = try await MariaDBConnection.connect(
                configuration: configuration(host: host, authority: certificates.authorityFile)
            )
            let version = try #require(
                try await connection.query("SHOW SESSION STATUS LIKE 'Ssl_version'").first
            ).decode(String.self, at: 1)
            #expect(version.hasPrefix("TLSv1."), "the server sees an unencrypted session from \(host)")
            await connection.close()
        }

        // A cancel (KILL QUERY from a side connection, over TLS too) stops the statement; the
        // session goes on.
        let connection = try await MariaDBConnection.connect(
            configuration: configuration(host: "127.0.0.1", authority: certificates.authorityFile)
        )
        let observer = try await MariaDBConnection.connect(url: server.url)
        let threadID = connection.serverConnectionID
        let sleeping = Task { try await connection.query("SELECT SLEEP(60)") }
        try await waitUntil(20) {
            try await observer.query(
                "SELECT count(*) FROM information_schema.processlist WHERE id = \(threadID) AND info LIKE 'SELECT SLEEP%'"
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
        let refused = try await #require(throws: MariaDBError.self) {
            try await MariaDBConnection.connect(
                configuration: configuration(host: "127.0.0.1", authority: stranger.authorityFile)
            )
        }
        #expect(refused.kind == .connectionFailed)
        #expect(refused.message.lowercased().contains("certificate"), "\(refused)")
        #expect(!"\(refused)".contains(server.password))
    }
}
