import CLibPQ
import CMariaDB
import Foundation
import SyncBridge
import SyncBridgeTesting
import Testing

/// The whole chain: a throwaway server, a C client handle bound to one ThreadExecutor thread,
/// and a real query through the raw C library.
@Suite("Raw C clients on thread-bound handles")
struct RawClientTests {
    @Test("libpq: connect with the password over TCP and run a query on the connection's thread")
    func postgres() async throws {
        let server = try await TemporaryPostgres.shared()
        let executor = ThreadExecutor(name: "sb-raw-pg")
        let conninfo = server.connectionString
        let connection = try await ThreadBound(on: executor) { PQconnectdb(conninfo) }
        let status = try await connection.withResource { conn in
            (PQstatus(conn) == CONNECTION_OK, String(cString: PQerrorMessage(conn)))
        }
        #expect(status.0, "connect failed: \(status.1)")

        let (value, backendThread) = try await connection.withResource { conn -> (String?, String) in
            let result = PQexec(conn, "SELECT 40 + 2, current_user")
            defer { PQclear(result) }
            guard PQresultStatus(result) == PGRES_TUPLES_OK else { return (nil, "") }
            let sum = String(cString: PQgetvalue(result, 0, 0))
            let user = String(cString: PQgetvalue(result, 0, 1))
            return ("\(sum) \(user)", ThreadIdentity.current.name)
        }
        #expect(value == "42 syncbridge")
        #expect(backendThread == "sb-raw-pg")
        try await connection.close { conn in PQfinish(conn) }
        await executor.shutdownGracefully()
    }

    @Test("libpq: a wrong password is refused (the server really checks it)")
    func postgresWrongPassword() async throws {
        let server = try await TemporaryPostgres.shared()
        let executor = ThreadExecutor(name: "sb-raw-pg-bad")
        let conninfo = "host=127.0.0.1 port=\(server.port) dbname=\(server.database) user=\(server.user) password=wrong"
        let message = try await executor.run { () -> String in
            let conn = PQconnectdb(conninfo)
            defer { PQfinish(conn) }
            return PQstatus(conn) == CONNECTION_OK ? "connected" : String(cString: PQerrorMessage(conn))
        }
        #expect(message.contains("password authentication failed"))
        await executor.shutdownGracefully()
    }

    @Test("libmariadb: connect with the password over TCP and run a query on the connection's thread")
    func mariadb() async throws {
        let server = try await TemporaryMariaDB.shared()
        let executor = ThreadExecutor(name: "sb-raw-maria")
        let (host, user, password, database, port) = (
            server.host, server.user, server.password, server.database, UInt32(server.port)
        )
        let connection = try await ThreadBound(on: executor) { () -> UnsafeMutablePointer<MYSQL> in
            mysql_init(nil)!
        }
        let connectError = try await connection.withResource { mysql -> String? in
            mysql_real_connect(mysql, host, user, password, database, port, nil, 0) == nil
                ? String(cString: mysql_error(mysql)) : nil
        }
        #expect(connectError == nil)

        let (value, thread) = try await connection.withResource { mysql -> (String?, String) in
            guard mysql_query(mysql, "SELECT 40 + 2, CURRENT_USER()") == 0,
                let result = mysql_store_result(mysql)
            else { return (nil, "") }
            defer { mysql_free_result(result) }
            guard let row = mysql_fetch_row(result), let sum = row[0], let current = row[1] else {
                return (nil, "")
            }
            return ("\(String(cString: sum)) \(String(cString: current))", ThreadIdentity.current.name)
        }
        #expect(value == "42 syncbridge@127.0.0.1")
        #expect(thread == "sb-raw-maria")
        try await connection.close { mysql in mysql_close(mysql) }
        await executor.shutdownGracefully()
    }

    @Test(
        "a stopped server is gone: its process ends and its folder is deleted",
        arguments: ["postgres", "mariadb"]
    )
    func stopCleansUp(kind: String) async throws {
        let directory: String
        let port: Int
        if kind == "postgres" {
            let server = try await TemporaryPostgres.start()
            (directory, port) = (server.directory, server.port)
            #expect(FileManager.default.fileExists(atPath: directory))
            #expect(Self.accepts(port: port))
            await server.stop()
        } else {
            let server = try await TemporaryMariaDB.start()
            (directory, port) = (server.directory, server.port)
            #expect(FileManager.default.fileExists(atPath: directory))
            #expect(Self.accepts(port: port))
            await server.stop()
        }
        #expect(!FileManager.default.fileExists(atPath: directory))
        #expect(!Self.accepts(port: port))
    }

    @Test(
        "stop() cleans up also when called from a cancelled task (a program interrupted by Ctrl-C)",
        arguments: ["postgres", "mariadb"]
    )
    func stopInCancelledTask(kind: String) async throws {
        let (directory, port): (String, Int)
        if kind == "postgres" {
            let server = try await TemporaryPostgres.start()
            (directory, port) = (server.directory, server.port)
            await Task {
                withUnsafeCurrentTask { $0?.cancel() }
                await server.stop()
            }.value
        } else {
            let server = try await TemporaryMariaDB.start()
            (directory, port) = (server.directory, server.port)
            await Task {
                withUnsafeCurrentTask { $0?.cancel() }
                await server.stop()
            }.value
        }
        #expect(!FileManager.default.fileExists(atPath: directory))
        #expect(!Self.accepts(port: port))
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}
