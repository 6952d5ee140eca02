public import Logging
public import Metrics
import SyncBridge

/// What a blocking C client library must provide for SyncBridge to turn it into an async,
/// pooled, cancellable database client: one session (one C connection handle) and the calls on
/// it.
///
/// This is the whole of an adapter. ``SQLConnection`` keeps the session on a dedicated thread of
/// its own and calls these requirements there, one at a time; ``SQLClient`` pools such
/// connections. Everything else — the thread hop, statement lanes, transactions and savepoints,
/// streaming in bounded memory, server-side cancellation, metrics, the deadlock detector's view of
/// leases, the raw-handle escape hatch — is written once, over this protocol. SyncBridge's
/// PostgreSQL (`PostgresSession`, over libpq) and MariaDB (`MariaDBSession`, over Connector/C)
/// facades are two conformances; the article "Wrap your own blocking C client" walks through a
/// third.
///
/// Every requirement except ``databaseName``, ``open(_:)``, ``isCancellation(_:)`` and
/// ``transactionStart(isolation:readOnly:)`` runs on the session's own thread, and may block
/// there: that is what the thread is for. A session is never shared between threads, so it need
/// not be `Sendable`.
public protocol SQLSession: AnyObject, SendableMetatype {
    /// Where and how to connect. Its `description` must leave secrets (passwords) out: it names
    /// the connection in logs and errors.
    associatedtype Configuration: Sendable & CustomStringConvertible
    /// The C library's connection handle, handed to legacy code by
    /// ``SQLConnection/withRawConnection(_:)``.
    associatedtype RawHandle
    /// Interrupts the session's running statement from another thread.
    associatedtype Canceller: SQLCanceller
    /// What a database adds to every ``SQLClient`` of it (PostgreSQL: the notification listener);
    /// ``SQLNoClientExtension`` for nothing.
    associatedtype ClientExtension: SQLClientExtension<Configuration> = SQLNoClientExtension<Configuration>

    /// Names the database in thread names (`sb-<name>-N`, at most 7 characters), logs and metrics
    /// (`syncbridge.<name>.abandoned_connections`): `postgres`, `mariadb`.
    static var databaseName: String { get }

    /// Connects (blocking) and prepares the session (character set, time zone, …).
    ///
    /// - Throws: The library's connection error, naming the server and the reason.
    static func open(_ configuration: Configuration) throws -> Self

    /// The canceller for this session, made on its thread right after ``open(_:)``.
    func makeCanceller(configuration: Configuration) -> Canceller

    /// The C handle, for legacy code that runs on the session's thread.
    var rawHandle: RawHandle { get }

    /// `false` once the connection broke or the server ended it: the pool then discards it.
    var isHealthy: Bool { get }

    /// Marks the session unusable (the connection is discarded instead of reused).
    func markBroken()

    /// Runs a statement with its bound parameters and reads all of its rows.
    ///
    /// - Parameters:
    ///   - query: The statement; its bindings are sent as parameters, never spliced into SQL.
    ///   - timeout: The caller's limit for this statement, if any; the session ends the statement
    ///     when it passes and throws its typed timeout error.
    func run(_ query: SQLQuery, timeout: SQLTimeout?) throws -> SQLOutcome

    /// Runs a parameterless control statement (`BEGIN`, `COMMIT`, `SAVEPOINT …`) and drops any
    /// result.
    func runControl(_ sql: String) throws

    /// Starts a statement whose rows ``nextBatch(limit:)`` then reads a few at a time. Until the
    /// rows are exhausted or ``abandonStream(cancel:)`` ran, other statements must fail with the
    /// database's "connection busy" error.
    func beginStream(_ query: SQLQuery) throws

    /// The next rows (at most `limit`) of the streamed statement; `nil` once it is exhausted.
    func nextBatch(limit: Int) throws -> [SQLRow]?

    /// Stops a streamed statement early, calling `cancel` if the server must be told, and leaves
    /// the session ready for the next statement (or broken).
    func abandonStream(cancel: () -> Void)

    /// A round trip to the server; `false` (and the session marked broken) when it fails.
    func ping() -> Bool

    /// Closes the connection; the session is not used afterwards.
    func close()

    /// Whether `error` says the server stopped the statement because the canceller asked it to:
    /// when the task was cancelled, the caller gets `CancellationError` instead.
    static func isCancellation(_ error: any Error) -> Bool

    /// The statements that start a transaction (the outermost level; inner levels are savepoints).
    static func transactionStart(isolation: SQLIsolationLevel?, readOnly: Bool) -> [String]

    /// Puts the session back in order after a statement was cancelled (for example a ping that
    /// notices a connection the cancel broke). Default: nothing.
    func recoverFromCancellation()

    /// Checks the session after legacy code used the raw handle (for example for an error that
    /// says the connection is gone). Default: nothing.
    func checkAfterRawAccess()

    /// The connection's socket, read on the session's thread after ``open(_:)``. When the server
    /// does not answer a cancel or a timeout within the grace period, the connection shuts the
    /// socket down from another thread, so that the blocked C call returns; `nil` (the default)
    /// where there is no socket (an in-process database).
    var socketDescriptor: Int32? { get }

    /// Whether the connection asks the canceller to stop a statement when its timeout passes.
    /// `false` (the default is `true`) for a session whose ``run(_:timeout:)`` has the server or
    /// the library end it (MariaDB's `max_statement_time`, SQLite's progress handler).
    static var cancelsAtTimeout: Bool { get }

    /// ``cancelsAtTimeout`` for connections made with `configuration`, for a session whose way of
    /// enforcing timeouts is configurable (MariaDB's ``SQLSession/cancelsAtTimeout`` is `false`
    /// unless it is behind a proxy). The default is ``cancelsAtTimeout``.
    static func cancelsAtTimeout(_ configuration: Configuration) -> Bool

    /// The database's typed timeout error for `query`, which ran past `timeout`: thrown when the
    /// statement was cancelled because of it, or abandoned when the server never answered.
    static func timeoutError(_ timeout: SQLTimeout, query: SQLQuery) -> any Error

    /// The timeout the connection gives each statement run without one (`query`, `execute`), for
    /// a configuration whose default timeout the server cannot keep (a session behind a
    /// transaction pooler); `nil` (the default) when the session sets it up itself or has none.
    static func clientStatementTimeout(_ configuration: Configuration) -> Duration?

    /// OpenTelemetry's `db.system.name` for the database (`postgresql`, `mariadb`): spans of the
    /// session's calls carry it. The default is ``databaseName`` in lower case.
    static var tracingSystemName: String { get }

    /// Where the session is connected, as spans show it (`server.address`, `server.port`,
    /// `db.namespace`). Read once, on the session's thread, after ``open(_:)``; the default says
    /// nothing.
    var tracingTarget: SQLTracingTarget { get }

    /// The statement as spans show it (`db.query.text`): with the session's placeholders, never
    /// the bound values. The default is the statement with `$1`, `$2`… placeholders.
    static func tracingText(of query: SQLQuery) -> String

    /// The database's code for an error one of the session's calls threw (a SQLSTATE, an error
    /// number), which spans record as `db.response.status_code` and `error.type`, or `nil`. The
    /// default is the SQLSTATE of an ``SQLServerError``.
    static func tracingStatusCode(of error: any Error) -> String?
}

extension SQLSession {
    /// Nothing to do.
    public func recoverFromCancellation() {}

    /// Nothing to check.
    public func checkAfterRawAccess() {}

    /// No socket.
    public var socketDescriptor: Int32? { nil }

    /// The connection cancels statements whose timeout passed.
    public static var cancelsAtTimeout: Bool { true }

    /// ``cancelsAtTimeout``, whatever the configuration.
    public static func cancelsAtTimeout(_ configuration: Configuration) -> Bool { cancelsAtTimeout }

    /// None: the session keeps its default timeout itself, if it has one.
    public static func clientStatementTimeout(_ configuration: Configuration) -> Duration? { nil }

    /// ``databaseName`` in lower case.
    public static var tracingSystemName: String { databaseName.lowercased() }

    /// Nothing known.
    public var tracingTarget: SQLTracingTarget { SQLTracingTarget() }

    /// The statement with `$1`, `$2`… placeholders.
    public static func tracingText(of query: SQLQuery) -> String { query.description }

    /// The SQLSTATE of an ``SQLServerError``; `nil` for other errors.
    public static func tracingStatusCode(of error: any Error) -> String? {
        guard let error = error as? any SQLServerError, !error.sqlState.isEmpty else { return nil }
        return error.sqlState
    }
}

/// Interrupts one session's running statement from any thread.
public protocol SQLCanceller: Sendable {
    /// Asks the server to stop the session's running statement, if any. Called from interrupt
    /// handlers: it must not block on the network (queue the request and return).
    func cancel()

    /// Called on the session's thread before each statement: waits (briefly) until a cancel meant
    /// for an earlier statement has reached the server, so that it cannot hit this one.
    ///
    /// - Throws: When a cancel is still pending after a bounded wait; the connection is then
    ///   marked broken and discarded.
    func settle() throws

    /// Whether a cancel request is still on its way to the server (``settle()`` would wait). A
    /// connection served by ``SQLIOThreads`` then runs its next statement the blocking way, after
    /// ``settle()``. The default is `false`: a canceller whose ``cancel()`` sends its request
    /// later must say so.
    var hasPendingCancels: Bool { get }

    /// The session is closing: later ``cancel()`` calls do nothing.
    func invalidate()
}

extension SQLCanceller {
    /// Nothing to wait for.
    public func settle() throws {}

    /// Nothing pending.
    public var hasPendingCancels: Bool { false }

    /// Nothing to release.
    public func invalidate() {}
}

/// What a statement produced.
public struct SQLOutcome: Sendable {
    /// The rows, each with its columns' names and types.
    public var rows: [SQLRow]
    /// The number of rows the statement inserted, updated or deleted (0 for other statements).
    public var rowsAffected: Int
    /// The `AUTO_INCREMENT` value an insert generated, where the database reports one.
    public var lastInsertID: UInt64?

    /// Rows the session left for the caller to decode (``SQLDeferredRows``); ``rows`` is empty
    /// until ``resolved()`` decodes them.
    package var deferredRows: SQLDeferredRows?

    /// Creates an outcome.
    public init(rows: [SQLRow] = [], rowsAffected: Int = 0, lastInsertID: UInt64? = nil) {
        self.rows = rows
        self.rowsAffected = rowsAffected
        self.lastInsertID = lastInsertID
    }

    /// An outcome whose rows the caller decodes.
    package init(deferredRows: SQLDeferredRows, rowsAffected: Int) {
        self.rows = []
        self.rowsAffected = rowsAffected
        self.deferredRows = deferredRows
    }

    /// The outcome with its deferred rows decoded, on the calling thread.
    package func resolved() -> SQLOutcome {
        guard let deferredRows else { return self }
        var outcome = self
        outcome.rows = deferredRows.decode()
        outcome.deferredRows = nil
        return outcome
    }
}

/// A result's rows, still in the C client's memory, that the statement's caller decodes.
///
/// An I/O thread serves many connections: decoding a large result there (or a large value)
/// would hold up every other connection of the thread for as long. A session that reads a result
/// on an I/O thread hands over the C client's result instead, when it holds more than a few
/// values, and the caller decodes it when it resumes, on its own thread.
package struct SQLDeferredRows: Sendable {
    /// Copies the rows out of the C client's result.
    package let decode: @Sendable () -> [SQLRow]

    /// Rows that `decode` copies out when the caller resumes.
    package init(decode: @escaping @Sendable () -> [SQLRow]) {
        self.decode = decode
    }
}

/// A caller's time limit for one statement.
public struct SQLTimeout: Sendable, Hashable {
    /// The limit as the caller gave it.
    public let duration: Duration
    /// When it passes, in monotonic nanoseconds (`CLOCK_MONOTONIC`): counted from the
    /// call, so that time spent queued for the connection's thread counts too.
    public let deadline: UInt64

    /// A limit of `duration` from now.
    public init(_ duration: Duration) {
        self.duration = duration
        self.deadline = monotonicNanoseconds() &+ UInt64(max(0, duration.nanosecondCount))
    }
}

/// How concurrent transactions see each other's changes (SQL's four levels).
public enum SQLIsolationLevel: String, Sendable, Hashable, CaseIterable {
    /// Sees uncommitted changes of other transactions (PostgreSQL runs it as read committed).
    case readUncommitted = "READ UNCOMMITTED"
    /// Each statement sees what was committed before it started; PostgreSQL's default.
    case readCommitted = "READ COMMITTED"
    /// One snapshot for the whole transaction; InnoDB's default.
    case repeatableRead = "REPEATABLE READ"
    /// As if transactions ran one after another; may fail with a serialization error that a
    /// retry (``withRetry(_:logger:fileID:line:_:)``) resolves.
    case serializable = "SERIALIZABLE"
}

/// Something a database adds to every ``SQLClient`` of it, made with the client and shut down
/// with it: PostgreSQL's notification listener.
public protocol SQLClientExtension<Configuration>: Sendable {
    /// The session's configuration.
    associatedtype Configuration: Sendable

    /// Made when the client is.
    init(configuration: Configuration, logger: Logger, metricsFactory: any MetricsFactory)

    /// The client is shutting down.
    func shutdown() async
}

/// A database that adds nothing to its clients.
public struct SQLNoClientExtension<Configuration: Sendable>: SQLClientExtension {
    /// Nothing to make.
    public init(configuration: Configuration, logger: Logger, metricsFactory: any MetricsFactory) {}

    /// Nothing to stop.
    public func shutdown() async {}
}
