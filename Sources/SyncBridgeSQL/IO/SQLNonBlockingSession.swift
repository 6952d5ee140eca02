#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A session whose C client can also run a statement without blocking: it sends the statement,
/// says what its socket must become ready for, and continues when it is. Connections of such a
/// session can be served by a few shared ``SQLIOThreads`` instead of a thread each.
///
/// Only single statements (``SQLSession/run(_:timeout:)``'s work, transactions' control
/// statements among them) take this path; everything else a connection does — streams, COPY,
/// `withRawConnection` — keeps the blocking calls of ``SQLSession``, run on the connection's own
/// thread while the I/O thread leaves the session alone. The two never overlap: a connection
/// runs one thing at a time, in submission order. A session that also implements
/// ``SQLTransactionStartPipelining`` saves a transaction a round trip.
///
/// PostgreSQL's session implements it with libpq's asynchronous API (`PQsendQueryPrepared`,
/// `PQflush`, `PQconsumeInput`, `PQisBusy`, `PQgetResult`), MariaDB's with Connector/C's
/// non-blocking calls (`mysql_stmt_execute_start` and `_cont`, and their kin).
public protocol SQLNonBlockingSession: SQLSession {
    /// The socket the I/O thread waits on. It must not change while the session is open.
    var ioSocket: Int32 { get }

    /// Whether this session's connection uses I/O threads at all (the default is `true`);
    /// `false` keeps every call on the connection's own thread, where the non-blocking path is
    /// not known to be safe (MariaDB over TLS).
    var usesIOThreads: Bool { get }

    /// The most statements the session takes in flight at once: statements queued on the
    /// connection are sent without waiting for the ones before (pipelining), each ending alone
    /// (a failure touches no other statement). 1 sends one at a time.
    var pipelineCapacity: Int { get }

    /// Sends `query` behind the statements in flight, without waiting for the server. The
    /// session may hold the bytes back until the next ``flushStatements()``, which the I/O thread
    /// calls after every burst of sends: a burst then costs one write.
    ///
    /// - Parameters:
    ///   - query: The statement and its values.
    ///   - timeout: The statement's timeout, for a session whose server ends statements past
    ///     their timeout itself (``SQLSession/cancelsAtTimeout(_:)`` is `false`): it tells the
    ///     server, as ``SQLSession/run(_:timeout:)`` does. A session whose connection cancels at
    ///     the deadline ignores it.
    /// - Throws: This statement's error when it cannot be sent (a parameter that cannot be
    ///   encoded: nothing was sent, the others go on), or the connection's (the session is then
    ///   unhealthy and every statement in flight has failed with it).
    func sendStatement(_ query: SQLQuery, timeout: SQLTimeout?) throws

    /// Writes what is left to send and reads what arrived.
    ///
    /// - Returns: The results of the statements that ended, oldest first, and what the socket
    ///   must become ready for while statements are still in flight.
    /// - Throws: The connection's error: every statement in flight failed with it.
    func pollStatements() throws -> SQLStatementPoll

    /// Right after a burst of sends: writes what the session held back, and may skip reading.
    ///
    /// The server has seldom answered a statement sent microseconds ago, and a read that finds
    /// nothing costs a system call per statement; a session that knows it has nothing complete
    /// to report yet returns only what to wait for. The default is ``pollStatements()``, for a
    /// session whose statements start in the poll (Connector/C's `_start` calls).
    ///
    /// - Returns: As ``pollStatements()``.
    /// - Throws: As ``pollStatements()``.
    func flushStatements() throws -> SQLStatementPoll

    /// The socket became readable, or failed, while the connection was idle (no statement in
    /// flight, no blocking work running): the server sent something unasked, or closed the
    /// connection. Reads it without blocking and says what the connection is; the lane marks one
    /// found over broken (``SQLSession/markBroken()``) and unusable at once, so that its pool
    /// discards it instead of leasing it.
    ///
    /// Between the calls of a stream or a COPY the connection is idle too, with their rows
    /// arriving: a session then answers ``SQLIdleCheck/inUse`` and reads nothing.
    /// ``SQLIdleSocket/peek(_:)`` looks at the socket without taking anything from it.
    func checkWhileIdle() -> SQLIdleCheck
}

/// What ``SQLNonBlockingSession/checkWhileIdle()`` found.
public enum SQLIdleCheck: Sendable {
    /// The connection can go on (what came was read: a notification, a notice); the socket is
    /// watched on.
    case usable
    /// The server closed or reset the connection, or said it is about to.
    case over
    /// A stream or a COPY spans calls on the connection, and what came is theirs: the socket is
    /// left alone until the next statement.
    case inUse
}

extension SQLNonBlockingSession {
    /// Every session can.
    public var usesIOThreads: Bool { true }

    /// Polls: reads what arrived as well.
    public func flushStatements() throws -> SQLStatementPoll {
        try pollStatements()
    }
}

/// What waits on an idle connection's socket, looked at without reading it.
public enum SQLIdleSocket: Equatable, Sendable {
    /// Nothing to read.
    case nothing
    /// Bytes the server sent.
    case data
    /// The end of the stream, or a socket error (a reset): the connection is over.
    case closed

    /// Peeks at `socket` without blocking and without taking anything from it.
    public static func peek(_ socket: Int32) -> SQLIdleSocket {
        var byte: UInt8 = 0
        while true {
            let count = recv(socket, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
            if count > 0 { return .data }
            if count == 0 { return .closed }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .nothing
            default: return .closed
            }
        }
    }
}

/// What ``SQLNonBlockingSession/pollStatements()`` found.
public struct SQLStatementPoll: Sendable {
    /// The results of the statements that ended, in the order they were sent.
    public var results: [Result<SQLOutcome, any Error>]
    /// What to wait for before polling again; `nil` once no statement is in flight.
    public var waitFor: SQLSocketInterest?
    /// How long to wait at most before polling again, for a C client with an I/O timeout of its
    /// own (Connector/C's read and write timeouts); `nil` waits as long as it takes.
    public var timeout: Duration?

    /// A poll's findings.
    public init(results: [Result<SQLOutcome, any Error>], waitFor: SQLSocketInterest?, timeout: Duration? = nil) {
        self.results = results
        self.waitFor = waitFor
        self.timeout = timeout
    }
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

/// A non-blocking session that can send a transaction's start together with the transaction's
/// first statement, as one unit that the server runs all or nothing: a transaction then costs
/// one round trip fewer. Connections of such a session served by I/O threads defer `BEGIN` until
/// the transaction's first statement (see ``SQLConnection/withTransaction(isolation:readOnly:at:_:)``).
///
/// PostgreSQL's session sends the start and the statement in libpq's pipeline mode, behind a
/// single sync point: if the start fails, the server skips the statement.
public protocol SQLTransactionStartPipelining: SQLNonBlockingSession {
    /// Sends `start` (the statements of ``SQLSession/transactionStart(isolation:readOnly:)``),
    /// then `query`, as one unit: the server runs `query` only if every statement of `start`
    /// succeeded. The unit's result is `query`'s, or, when a statement of `start` failed,
    /// ``SQLTransactionNotStarted`` with its error.
    ///
    /// - Parameters:
    ///   - query: The transaction's first statement.
    ///   - timeout: As ``SQLNonBlockingSession/sendStatement(_:timeout:)``.
    ///   - start: The statements that start the transaction.
    /// - Throws: As ``SQLNonBlockingSession/sendStatement(_:timeout:)``: when `query` cannot be
    ///   encoded, nothing was sent.
    func sendStatement(_ query: SQLQuery, timeout: SQLTimeout?, startingTransaction start: [String]) throws
}

/// What a transaction's statements fail with when the transaction could not start on the
/// server: its start was sent with its first statement (see ``SQLTransactionStartPipelining``)
/// and failed, so that statement did not run, and none of the transaction's later statements is
/// sent. `withTransaction` throws ``underlying``, the server's error, as it would have for a
/// start sent alone.
public struct SQLTransactionNotStarted: Error, CustomStringConvertible {
    /// Why the transaction's start failed.
    public let underlying: any Error

    /// The failure of a transaction's start.
    public init(underlying: any Error) {
        self.underlying = underlying
    }

    /// "the transaction could not start: " and the server's error.
    public var description: String {
        "the transaction could not start: \(underlying)"
    }
}
