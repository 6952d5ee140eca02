import Foundation
import SyncBridgeTemporaryServers

/// The databases a sample talks to: the servers that `POSTGRES_URL` and `MARIADB_URL` name, or
/// throwaway local servers started for the run (and deleted when it ends, even on Ctrl-C).
public struct SampleDatabases: Sendable {
    /// A `postgres://` URL, with its password.
    public let postgresURL: String
    /// A `mariadb://` URL, with its password.
    public let mariaDBURL: String
    private let temporaryPostgres: TemporaryPostgres?
    private let temporaryMariaDB: TemporaryMariaDB?

    /// Where each database comes from, for the sample's first lines of output (no password).
    public let origin: String

    private init(postgres: TemporaryPostgres?, mariaDB: TemporaryMariaDB?, stopsServers: Bool) {
        let environment = ProcessInfo.processInfo.environment
        postgresURL = environment["POSTGRES_URL"] ?? postgres?.url ?? ""
        mariaDBURL = environment["MARIADB_URL"] ?? mariaDB?.url ?? ""
        let origins = [
            environment["POSTGRES_URL"] != nil
                ? "PostgreSQL from POSTGRES_URL" : postgres.map { "throwaway PostgreSQL on port \($0.port)" },
            environment["MARIADB_URL"] != nil
                ? "MariaDB from MARIADB_URL" : mariaDB.map { "throwaway MariaDB on port \($0.port)" },
        ]
        origin = origins.compactMap { $0 }.joined(separator: ", ")
        temporaryPostgres = stopsServers ? postgres : nil
        temporaryMariaDB = stopsServers ? mariaDB : nil
    }

    /// Uses `POSTGRES_URL` and `MARIADB_URL` when set; starts throwaway servers for the others.
    ///
    /// - Parameters:
    ///   - postgres: Whether the sample needs PostgreSQL.
    ///   - mariaDB: Whether the sample needs MariaDB.
    /// - Throws: ``TemporaryServerError`` when a server cannot be started (saying which package
    ///   to install).
    public static func start(postgres: Bool = true, mariaDB: Bool = true) async throws -> SampleDatabases {
        let environment = ProcessInfo.processInfo.environment
        async let startedPostgres: TemporaryPostgres? =
            postgres && environment["POSTGRES_URL"] == nil ? TemporaryPostgres.start() : nil
        async let startedMariaDB: TemporaryMariaDB? =
            mariaDB && environment["MARIADB_URL"] == nil ? TemporaryMariaDB.start() : nil
        let (pg, maria) = try await (startedPostgres, startedMariaDB)
        return SampleDatabases(postgres: pg, mariaDB: maria, stopsServers: true)
    }

    /// The databases shared by every test of the process: started on first use, deleted when the
    /// process exits.
    public static func shared() async throws -> SampleDatabases {
        let environment = ProcessInfo.processInfo.environment
        async let startedPostgres: TemporaryPostgres? =
            environment["POSTGRES_URL"] == nil ? TemporaryPostgres.shared() : nil
        async let startedMariaDB: TemporaryMariaDB? =
            environment["MARIADB_URL"] == nil ? TemporaryMariaDB.shared() : nil
        let (pg, maria) = try await (startedPostgres, startedMariaDB)
        // The shared servers outlive this value: the end of the process deletes them.
        return SampleDatabases(postgres: pg, mariaDB: maria, stopsServers: false)
    }

    /// Stops and deletes the throwaway servers this value started.
    public func stop() async {
        await temporaryPostgres?.stop()
        await temporaryMariaDB?.stop()
    }
}
