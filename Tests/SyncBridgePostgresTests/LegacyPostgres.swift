import CLibPQ
import SharedTestSupport

/// Stands for existing synchronous code that calls libpq directly.
enum LegacyPostgres {
    static func serverVersion(_ connection: OpaquePointer) -> Int {
        Int(PQserverVersion(connection))
    }

    static func clientEncoding(_ connection: OpaquePointer) -> String {
        String(cString: pg_encoding_to_char(PQclientEncoding(connection)))
    }

    /// Runs a query with PQexec and returns the first value of the first row.
    static func firstValue(_ connection: OpaquePointer, _ sql: String) -> String? {
        let result = PQexec(connection, sql)
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_TUPLES_OK, PQntuples(result) > 0 else { return nil }
        return String(cString: PQgetvalue(result, 0, 0))
    }
}
