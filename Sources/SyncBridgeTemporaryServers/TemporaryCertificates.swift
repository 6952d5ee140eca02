import Foundation
import SyncBridge

/// A certificate authority and a server certificate signed by it, generated with `openssl` for one
/// test run: the throwaway servers serve the certificate, and clients verify it against
/// ``authorityFile``.
///
/// The server certificate names `localhost` and `127.0.0.1`, so clients can verify the host name
/// (`sslmode=verify-full`, MariaDB's `verify-identity`) on either.
///
/// ```swift
/// let certificates = try await TemporaryCertificates.generate()
/// let server = try await TemporaryPostgres.start(tls: certificates)
/// let client = PostgresClient(
///     connectionString: "\(server.connectionString) sslmode=verify-full sslrootcert=\(certificates.authorityFile)"
/// )
/// ```
public struct TemporaryCertificates: Sendable, Hashable {
    /// The folder that holds the files.
    public let directory: String
    /// The authority's certificate (PEM): what clients trust.
    public let authorityFile: String
    /// The server's certificate (PEM), signed by the authority.
    public let certificateFile: String
    /// The server certificate's private key (PEM, unencrypted).
    public let keyFile: String

    /// Generates a new authority and server certificate (RSA 2048, valid for two days) in a new
    /// temporary folder. `openssl` runs on a thread of the throwaway servers' pool, not on the
    /// calling task's: generating keys takes a good part of a second.
    ///
    /// - Throws: ``TemporaryServerError`` when `openssl` is missing or fails, with its output.
    public static func generate() async throws -> TemporaryCertificates {
        try await ServerSupport.pool.run { try generateBlocking() }
    }

    private static func generateBlocking() throws -> TemporaryCertificates {
        guard let openssl = ServerSupport.findExecutable("openssl") else {
            throw TemporaryServerError("openssl was not found in PATH: install it (apt-get install openssl)")
        }
        let directory = try ServerSupport.makeTemporaryDirectory(prefix: "syncbridge-tls")
        let certificates = TemporaryCertificates(
            directory: directory,
            authorityFile: "\(directory)/ca.crt",
            certificateFile: "\(directory)/server.crt",
            keyFile: "\(directory)/server.key"
        )
        do {
            try ServerSupport.run(
                [
                    openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=SyncBridge throwaway authority", "-keyout", "\(directory)/ca.key",
                    "-out", certificates.authorityFile, "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                ],
                what: "openssl: the certificate authority"
            )
            try ServerSupport.run(
                [
                    openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-keyout", certificates.keyFile, "-out", "\(directory)/server.csr",
                ],
                what: "openssl: the server's key and request"
            )
            try "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n".write(
                toFile: "\(directory)/server.ext",
                atomically: true,
                encoding: .utf8
            )
            try ServerSupport.run(
                [
                    openssl, "x509", "-req", "-in", "\(directory)/server.csr", "-CA", certificates.authorityFile,
                    "-CAkey", "\(directory)/ca.key", "-CAcreateserial", "-days", "2",
                    "-extfile", "\(directory)/server.ext", "-out", certificates.certificateFile,
                ],
                what: "openssl: signing the server's certificate"
            )
        } catch {
            certificates.delete()
            throw error
        }
        return certificates
    }

    /// Deletes the folder and its files.
    public func delete() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Copies the certificate and key into `folder` for a server process running as `user`
    /// (PostgreSQL refuses a key that others can read); returns the copies' paths.
    func install(in folder: String, owner user: String?) throws -> (certificate: String, key: String) {
        let certificate = "\(folder)/server.crt"
        let key = "\(folder)/server.key"
        for (source, destination) in [(certificateFile, certificate), (keyFile, key)] {
            try? FileManager.default.removeItem(atPath: destination)
            try FileManager.default.copyItem(atPath: source, toPath: destination)
            if let user { try ServerSupport.chown(destination, to: user) }
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)
        return (certificate, key)
    }
}
