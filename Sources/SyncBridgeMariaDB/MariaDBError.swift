public import SyncBridgeSQL

/// An error from MariaDB/MySQL or from the connection to it.
///
/// Server errors carry the server's error number, SQLSTATE and message; ``isDuplicateKey``,
/// ``isDeadlock`` and ``isLockWaitTimeout`` answer the usual questions:
///
/// ```swift
/// do {
///     try await db.execute("INSERT INTO users (email) VALUES (\(email))")
/// } catch let error as MariaDBError where error.isDuplicateKey {
///     // already registered
/// }
/// ```
///
/// No password ever appears in an error.
public struct MariaDBError: SQLServerError, CustomStringConvertible {
    /// What failed.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case invalidConfiguration
            case connectionFailed
            case connectionClosed
            case server
            case connectionBusy
            case timedOut
            case client
        }

        private let base: Base

        /// The URL or configuration is malformed; ``message`` says what is wrong.
        public static let invalidConfiguration = Kind(base: .invalidConfiguration)
        /// Connecting failed: ``host`` and ``message`` say where and why.
        public static let connectionFailed = Kind(base: .connectionFailed)
        /// The connection broke, timed out reading, or the server ended it (`KILL`, shutdown); the
        /// connection is unusable and a pool discards it.
        public static let connectionClosed = Kind(base: .connectionClosed)
        /// The server rejected the statement: see ``number`` and ``sqlState``.
        public static let server = Kind(base: .server)
        /// The connection is streaming another statement's rows; finish or drop that stream first.
        public static let connectionBusy = Kind(base: .connectionBusy)
        /// The statement ran past its timeout and the server aborted it; the connection stays
        /// usable.
        public static let timedOut = Kind(base: .timedOut)
        /// Connector/C refused the call (a statement it cannot prepare or bind, a result it cannot
        /// read); ``number`` is Connector/C's error code.
        public static let client = Kind(base: .client)

        /// The kind's name.
        public var description: String {
            switch base {
            case .invalidConfiguration: "invalidConfiguration"
            case .connectionFailed: "connectionFailed"
            case .connectionClosed: "connectionClosed"
            case .server: "server"
            case .connectionBusy: "connectionBusy"
            case .timedOut: "timedOut"
            case .client: "client"
            }
        }
    }

    /// What failed.
    public let kind: Kind
    /// The server's error number (1062 duplicate key, 1213 deadlock…) or Connector/C's (2002 and
    /// up); 0 when neither reported one.
    public let number: UInt32
    /// The five-character SQLSTATE, such as `23000`; `HY000` when there is none more specific.
    public let sqlState: String
    /// The server's or Connector/C's message.
    public let message: String
    /// The statement, with `?` where its bound values go (never the values).
    public let query: String?
    /// `host:port` or the socket path, for connection errors.
    public let host: String?
    /// For ``SQLConnection/executeMany(_:rows:timeout:fileID:line:)``, the index (from 0) of the
    /// row the server refused; `nil` otherwise, or when the server did not say.
    public let row: Int?

    /// Creates an error.
    public init(
        kind: Kind,
        number: UInt32 = 0,
        sqlState: String = "HY000",
        message: String,
        query: String? = nil,
        host: String? = nil,
        row: Int? = nil
    ) {
        self.kind = kind
        self.number = number
        self.sqlState = sqlState
        self.message = message
        self.query = query
        self.host = host
        self.row = row
    }

    /// This error, naming the row of a batch it concerns.
    func inRow(_ row: Int) -> MariaDBError {
        MariaDBError(
            kind: kind,
            number: number,
            sqlState: sqlState,
            message: message,
            query: query,
            host: host,
            row: row
        )
    }

    /// The server's message.
    public var serverMessage: String { message }

    /// A unique or primary key rejected the row (1062 `ER_DUP_ENTRY`, 1586
    /// `ER_DUP_ENTRY_WITH_KEY_NAME`).
    public var isDuplicateKey: Bool { kind == .server && (number == 1062 || number == 1586) }

    /// The same as ``isDuplicateKey``, under the name both facades share.
    public var isUniqueViolation: Bool { isDuplicateKey }

    /// The server chose this transaction as a deadlock victim (1213 `ER_LOCK_DEADLOCK`) and rolled
    /// it back: retrying the whole transaction may succeed.
    public var isDeadlock: Bool { kind == .server && number == 1213 }

    /// A lock was not granted within `innodb_lock_wait_timeout` (1205
    /// `ER_LOCK_WAIT_TIMEOUT`); only the statement was rolled back, unless
    /// `innodb_rollback_on_timeout` is on.
    public var isLockWaitTimeout: Bool { kind == .server && number == 1205 }

    /// A deadlock or a lock wait timeout: retrying the whole transaction may succeed.
    public var isTransient: Bool { isDeadlock || isLockWaitTimeout }

    /// The statement was interrupted on the server (`KILL QUERY`, 1317).
    public var isQueryInterrupted: Bool { number == 1317 }

    /// `MariaDB error 1062 (23000): Duplicate entry '…' for key 'PRIMARY' in INSERT INTO …`.
    public var description: String {
        var text: String
        switch kind {
        case .server:
            text = "MariaDB error \(number) (\(sqlState)): \(message)"
        case .connectionFailed:
            text = "cannot connect to MariaDB\(host.map { " at \($0)" } ?? ""): \(message)"
            if number != 0 { text += " (\(number))" }
        default:
            text = "MariaDB \(kind): \(message)"
            if number != 0 { text += " (\(number))" }
        }
        if let query { text += " in \(query)" }
        if let row { text += " (row \(row) of the batch)" }
        return text
    }
}
