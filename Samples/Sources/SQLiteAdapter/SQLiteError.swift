import CSQLite
public import SyncBridgeSQL

/// An error SQLite reported, with its (extended) result code, its message and the statement.
public struct SQLiteError: SQLServerError, CustomStringConvertible {
    /// SQLite's extended result code, such as 2067 (`SQLITE_CONSTRAINT_UNIQUE`).
    public let code: Int32
    /// SQLite's message.
    public let serverMessage: String
    /// The statement, if one was running.
    public let sql: String?
    /// The statement ran past its timeout and was interrupted.
    public let isTimeout: Bool

    init(code: Int32, message: String, sql: String?, isTimeout: Bool = false) {
        self.code = code
        self.serverMessage = message
        self.sql = sql
        self.isTimeout = isTimeout
    }

    /// The primary result code (`SQLITE_CONSTRAINT`, `SQLITE_BUSY`…).
    public var primaryCode: Int32 { code & 0xFF }

    /// The SQLSTATE closest to the result code (SQLite has none of its own).
    public var sqlState: String {
        switch code {
        case 2067, 1555: "23505"  // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY
        case 787: "23503"  // SQLITE_CONSTRAINT_FOREIGNKEY
        case 275: "23514"  // SQLITE_CONSTRAINT_CHECK
        case 1299: "23502"  // SQLITE_CONSTRAINT_NOTNULL
        default: primaryCode == SQLITE_INTERRUPT ? "57014" : "HY000"
        }
    }

    /// A unique or primary-key constraint rejected the row.
    public var isUniqueViolation: Bool { code == 2067 || code == 1555 }

    /// SQLite has no deadlock victims (`BEGIN IMMEDIATE` avoids lock upgrades).
    public var isDeadlock: Bool { false }

    /// The database was locked past the busy timeout: another attempt may succeed.
    public var isTransient: Bool { primaryCode == SQLITE_BUSY || primaryCode == SQLITE_LOCKED }

    /// `SQLite error 2067: UNIQUE constraint failed: products.sku — in: INSERT …`.
    public var description: String {
        "SQLite error \(code): \(serverMessage)" + (sql.map { " — in: \($0)" } ?? "")
    }
}
