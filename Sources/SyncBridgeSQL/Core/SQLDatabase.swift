public import SyncBridge

/// Something that runs SQL statements: a pooled client or one connection, of any database.
///
/// Both facades' clients and connections adopt it (`PostgresClient`, `PostgresConnection`,
/// `MariaDBClient`, `MariaDBConnection`, and any ``SQLClient`` over a session of your own), so a
/// data layer can be written once for every database:
///
/// ```swift
/// struct Inventory<Database: SQLDatabase> {
///     let database: Database
///
///     func reserve(_ sku: String, quantity: Int) async throws -> Bool {
///         try await database.withTransaction { connection in
///             let updated = try await connection.execute(
///                 "UPDATE stock SET quantity = quantity - \(quantity) WHERE sku = \(sku) AND quantity >= \(quantity)"
///             )
///             return updated == 1
///         }
///     }
/// }
/// ```
///
/// The requirements take a `CallSite`; call the forms without it (``query(_:timeout:fileID:line:)``,
/// ``execute(_:timeout:fileID:line:)``, ``stream(_:batchSize:fileID:line:)``,
/// ``withTransaction(isolation:readOnly:fileID:line:_:)``), which fill it in.
public protocol SQLDatabase: Sendable {
    /// The blocking session underneath.
    associatedtype Session: SQLSession

    /// Runs a statement and returns what it produced.
    ///
    /// - Parameters:
    ///   - query: The statement; interpolated values are bound parameters, never spliced in.
    ///   - timeout: Ends the statement if it runs longer, with the database's typed timeout
    ///     error; `nil` for the session's limit.
    ///   - callSite: Where the statement was issued, for reports.
    func run(_ query: SQLQuery, timeout: Duration?, at callSite: CallSite) async throws -> SQLOutcome

    /// Runs a statement and streams its rows in batches, in bounded memory.
    func stream(_ query: SQLQuery, batchSize: Int, at callSite: CallSite) async throws -> SQLRowStream

    /// Runs `body` in a transaction on one connection: commits when it returns, rolls back when
    /// it throws or the task is cancelled; nested calls use savepoints.
    func withTransaction<Result: Sendable>(
        isolation: SQLIsolationLevel?,
        readOnly: Bool,
        at callSite: CallSite,
        _ body: (SQLConnection<Session>) async throws -> Result
    ) async throws -> Result
}

extension SQLDatabase {
    /// Runs a statement and returns all its rows.
    ///
    /// ```swift
    /// let rows = try await database.query("SELECT id, name FROM users WHERE team = \(team)")
    /// let users = try rows.map { try $0.decode((Int, String).self) }
    /// ```
    ///
    /// - Parameters:
    ///   - fileID: Where the call is, for reports; leave the default.
    ///   - line: Where the call is, for reports; leave the default.
    ///   - query: The statement; interpolated values are bound parameters.
    ///   - timeout: Ends the statement on the server if it runs longer, failing with the
    ///     database's typed timeout error; `nil` for no limit beyond the session's.
    /// - Returns: The rows, each with its columns' names and types.
    /// - Throws: The database's error from the server or the connection; ``SQLEncodingError`` for
    ///   a parameter that cannot be sent; `CancellationError` when the task was cancelled (the
    ///   statement is cancelled on the server).
    @discardableResult
    public func query(
        _ query: SQLQuery,
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> [SQLRow] {
        try await run(query, timeout: timeout, at: CallSite(fileID: fileID, line: line)).rows
    }

    /// Runs a statement and returns the number of rows it inserted, updated or deleted.
    ///
    /// MariaDB counts rows *found*, as PostgreSQL does: an `UPDATE` that matches a row but leaves
    /// it unchanged still counts it.
    ///
    /// - Parameters:
    ///   - fileID: Where the call is, for reports; leave the default.
    ///   - line: Where the call is, for reports; leave the default.
    ///   - query: The statement; interpolated values are bound parameters.
    ///   - timeout: As in ``query(_:timeout:fileID:line:)``.
    /// - Returns: The affected row count (0 for statements that change no rows).
    /// - Throws: As ``query(_:timeout:fileID:line:)``.
    @discardableResult
    public func execute(
        _ query: SQLQuery,
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> Int {
        try await run(query, timeout: timeout, at: CallSite(fileID: fileID, line: line)).rowsAffected
    }

    /// Runs a statement and streams its rows: they are read from the server in batches as the
    /// consumer asks for them, so a result of any size runs in bounded memory.
    ///
    /// ```swift
    /// for try await row in try await database.stream("SELECT id, payload FROM events") {
    ///     try process(row.decode((Int, String).self))
    /// }
    /// ```
    ///
    /// The connection is busy until the rows are exhausted or the stream is dropped; dropping it
    /// early stops the statement on the server. From a client, the connection goes back to the
    /// pool then.
    ///
    /// - Parameters:
    ///   - fileID: Where the call is, for reports; leave the default.
    ///   - line: Where the call is, for reports; leave the default.
    ///   - query: The statement.
    ///   - batchSize: Rows read per trip to the connection's thread.
    /// - Returns: The rows, as an `AsyncSequence`.
    /// - Throws: As ``query(_:timeout:fileID:line:)``, for errors before the first rows.
    public func stream(
        _ query: SQLQuery,
        batchSize: Int = 1000,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> SQLRowStream {
        try await stream(query, batchSize: batchSize, at: CallSite(fileID: fileID, line: line))
    }

    /// Runs `body` in a transaction on one connection: commits when it returns, rolls back when
    /// it throws or when the task is cancelled. Nested calls use savepoints, so an inner failure
    /// rolls back only the inner part.
    ///
    /// ```swift
    /// try await database.withTransaction { connection in
    ///     try await connection.execute("UPDATE accounts SET balance = balance - \(amount) WHERE id = \(from)")
    ///     try await connection.execute("UPDATE accounts SET balance = balance + \(amount) WHERE id = \(to)")
    /// }
    /// ```
    ///
    /// MariaDB commits implicitly before DDL (`CREATE`, `ALTER`, `DROP`…): keep such statements
    /// out of transactions.
    ///
    /// - Parameters:
    ///   - fileID: Where the call is, for reports; leave the default.
    ///   - line: Where the call is, for reports; leave the default.
    ///   - isolation: The isolation level; the session's when `nil`. Ignored when nested.
    ///   - readOnly: Starts a read-only transaction. Ignored when nested.
    ///   - body: The work; it receives the transaction's connection.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws (after the rollback); `CancellationError` when the task was
    ///   cancelled; the database's error when `COMMIT` fails; from a client,
    ///   ``ConnectionPoolError`` when no connection is free within the acquire timeout.
    @discardableResult
    public func withTransaction<Result: Sendable>(
        isolation: SQLIsolationLevel? = nil,
        readOnly: Bool = false,
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: (SQLConnection<Session>) async throws -> Result
    ) async throws -> Result {
        try await withTransaction(
            isolation: isolation,
            readOnly: readOnly,
            at: CallSite(fileID: fileID, line: line),
            body
        )
    }
}
