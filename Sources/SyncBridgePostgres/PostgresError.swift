public import SyncBridgeSQL

/// An error from PostgreSQL or from the connection to it.
///
/// Server errors carry every field PostgreSQL reports; ``sqlState`` tells them apart, and
/// ``isUniqueViolation``, ``isDeadlock`` and ``isSerializationFailure`` answer the usual questions:
///
/// ```swift
/// do {
///     try await db.execute("INSERT INTO users (email) VALUES (\(email))")
/// } catch let error as PostgresError where error.isUniqueViolation {
///     // already registered
/// }
/// ```
///
/// No password ever appears in an error: connection errors quote libpq's message, which names the
/// host and port but never the credentials.
public struct PostgresError: SQLServerError, CustomStringConvertible {
    /// What failed.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case connectionFailed
            case connectionClosed
            case server
            case connectionBusy
            case timedOut
            case protocolViolation
        }

        private let base: Base

        /// Connecting failed: ``host`` and ``message`` say where and why.
        public static let connectionFailed = Kind(base: .connectionFailed)
        /// The connection broke or the server ended the session (a `FATAL` error such as
        /// `pg_terminate_backend`, whose SQLSTATE and message are kept); the connection is unusable
        /// and a pool discards it.
        public static let connectionClosed = Kind(base: .connectionClosed)
        /// The server rejected the statement: see ``sqlState`` and the other fields.
        public static let server = Kind(base: .server)
        /// The connection is streaming another statement's rows; finish or drop that stream first.
        public static let connectionBusy = Kind(base: .connectionBusy)
        /// The statement ran past the timeout given to it and was cancelled on the server; the
        /// connection stays usable.
        public static let timedOut = Kind(base: .timedOut)
        /// libpq reported something SyncBridge did not expect.
        public static let protocolViolation = Kind(base: .protocolViolation)

        /// The kind's name.
        public var description: String {
            switch base {
            case .connectionFailed: "connectionFailed"
            case .connectionClosed: "connectionClosed"
            case .server: "server"
            case .connectionBusy: "connectionBusy"
            case .timedOut: "timedOut"
            case .protocolViolation: "protocolViolation"
            }
        }
    }

    /// What failed.
    public let kind: Kind
    /// The primary message (the server's, or libpq's for connection errors).
    public let message: String
    /// SQLSTATE, such as `23505`; for connection errors `08006` (connection failure).
    public let sqlState: String
    /// `ERROR`, `FATAL` or `PANIC` for server errors.
    public let severity: String?
    /// The server's optional detail.
    public let detail: String?
    /// The server's optional hint.
    public let hint: String?
    /// The 1-based character position in the statement where the error was found.
    public let position: Int?
    /// The constraint that was violated, for constraint errors.
    public let constraint: String?
    /// The table involved, when the server names one.
    public let table: String?
    /// The column involved, when the server names one.
    public let column: String?
    /// The host (and port) the error concerns, for connection errors.
    public let host: String?
    /// The statement, with `$n` placeholders and no values.
    public let query: String?
    /// For a failure in an atomic pipeline
    /// (``SQLConnection/atomicPipeline(_:timeout:)``), the position of the statement that failed
    /// (from 0); `nil` otherwise.
    public internal(set) var statementIndex: Int?

    init(
        kind: Kind,
        message: String,
        sqlState: String,
        severity: String? = nil,
        detail: String? = nil,
        hint: String? = nil,
        position: Int? = nil,
        constraint: String? = nil,
        table: String? = nil,
        column: String? = nil,
        host: String? = nil,
        query: String? = nil
    ) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
        self.severity = severity
        self.detail = detail
        self.hint = hint
        self.position = position
        self.constraint = constraint
        self.table = table
        self.column = column
        self.host = host
        self.query = query
    }

    /// The server's message (``SQLServerError`` requirement).
    public var serverMessage: String { message }
    /// SQLSTATE 23505.
    public var isUniqueViolation: Bool { sqlState == "23505" }
    /// SQLSTATE 40P01: this transaction was chosen as a deadlock victim.
    public var isDeadlock: Bool { sqlState == "40P01" }
    /// SQLSTATE 40001: a serializable transaction could not be serialized.
    public var isSerializationFailure: Bool { sqlState == "40001" }
    /// SQLSTATE 57014: the statement was cancelled (by a cancel request or `statement_timeout`).
    public var isQueryCanceled: Bool { sqlState == "57014" }
    /// The statement ran too long: past a per-statement timeout given to SyncBridge
    /// (``Kind/timedOut``), or past the server's `statement_timeout`.
    public var isStatementTimeout: Bool {
        kind == .timedOut || (sqlState == "57014" && message.contains("statement timeout"))
    }
    /// A deadlock, a serialization failure or a lock timeout (55P03): retrying the transaction
    /// may succeed.
    public var isTransient: Bool { isDeadlock || isSerializationFailure || sqlState == "55P03" }

    /// One line with the kind, the SQLSTATE, the message, and the fields that are present.
    public var description: String {
        var text = "PostgreSQL \(kind) error"
        if let severity { text += " (\(severity) \(sqlState))" } else { text += " (\(sqlState))" }
        if let host { text += " at \(host)" }
        text += ": \(message)"
        if let detail { text += " — detail: \(detail)" }
        if let hint { text += " — hint: \(hint)" }
        if let constraint { text += " — constraint: \(constraint)" }
        if let position { text += " — at character \(position)" }
        if let query { text += " — in: \(query)" }
        if let statementIndex { text += " — statement \(statementIndex) of the pipeline" }
        return text
    }
}
