/// A session whose C client can also run a statement without blocking: it sends the statement,
/// says what its socket must become ready for, and continues when it is. Connections of such a
/// session can be served by a few shared ``SQLIOThreads`` instead of a thread each.
///
/// Only single statements (``SQLSession/run(_:timeout:)``'s work) take this path; everything else
/// a connection does — transactions' control statements, streams, COPY, `withRawConnection` —
/// keeps the blocking calls of ``SQLSession``, run on the connection's own thread while the I/O
/// thread leaves the session alone. The two never overlap: a connection runs one thing at a time,
/// in submission order.
///
/// PostgreSQL's session implements it with libpq's asynchronous API (`PQsendQueryPrepared`,
/// `PQflush`, `PQconsumeInput`, `PQisBusy`, `PQgetResult`).
public protocol SQLNonBlockingSession: SQLSession {
    /// The socket the I/O thread waits on. It must not change while the session is open.
    var ioSocket: Int32 { get }

    /// Sends `query` without waiting for the server.
    ///
    /// - Returns: ``SQLStatementProgress/done(_:)`` when the statement already ended, otherwise
    ///   what the socket must become ready for before ``continueStatement()``.
    /// - Throws: The statement's error (an encoding error, the server's, the connection's); the
    ///   statement is then over.
    func startStatement(_ query: SQLQuery) throws -> SQLStatementProgress

    /// Continues the statement started by ``startStatement(_:)`` once its socket is ready (or
    /// failed): reads what arrived, writes what is pending.
    ///
    /// - Returns: As ``startStatement(_:)``.
    /// - Throws: As ``startStatement(_:)``.
    func continueStatement() throws -> SQLStatementProgress
}

/// Where a non-blocking statement stands.
public enum SQLStatementProgress: Sendable {
    /// The statement is still running: continue it when the socket is ready for this.
    case waiting(SQLSocketInterest)
    /// The statement ended with this outcome.
    case done(SQLOutcome)
}

/// What a non-blocking statement waits for on its socket.
public struct SQLSocketInterest: OptionSet, Sendable {
    /// The raw flags.
    public let rawValue: Int32

    /// Interest from raw flags.
    public init(rawValue: Int32) {
        self.rawValue = rawValue
    }

    /// The server's answer (data to read).
    public static let readable = SQLSocketInterest(rawValue: 1)
    /// Room to send the rest of the statement.
    public static let writable = SQLSocketInterest(rawValue: 2)
}
