import SyncBridge
public import SyncBridgeSQL
import Tracing

extension SQLConnection where Session == MariaDBSession {
    /// Runs one statement for each of many rows of values — an `INSERT`, `UPDATE`, `DELETE` or
    /// `REPLACE` with a `?` for each of a row's values — in as few round trips as possible, and
    /// returns the rows affected in all.
    ///
    /// ```swift
    /// let inserted = try await connection.executeMany(
    ///     "INSERT INTO products (id, name, price) VALUES (?, ?, ?)",
    ///     rows: products.map { [.int($0.id), .text($0.name), .decimal($0.price)] }
    /// )
    /// ```
    ///
    /// MariaDB 10.2 and later take the rows in bulk commands (`COM_STMT_BULK_EXECUTE`): thousands
    /// of rows per round trip, each command at most about 2 MB of values. Behind a proxy
    /// (``MariaDBConfiguration/isBehindProxy``), with ``MariaDBConfiguration/bulkExecution`` off,
    /// or on a server without bulk commands (MySQL), the prepared statement runs once per row,
    /// on the connection's thread without a hop per row.
    ///
    /// The call stands or falls as a whole on transactional tables (InnoDB): outside a
    /// transaction, what takes more than one command runs in a transaction of its own; inside
    /// one, a failure leaves the transaction to the caller, who rolls it back as usual by
    /// throwing. Every value is checked before anything is sent.
    ///
    /// - Parameters:
    ///   - statement: The statement, with a `?` for each of a row's values and no interpolated
    ///     value.
    ///   - rows: Each row's values, in the order of the placeholders. A parameter takes values of
    ///     one type (or `NULL`) in every row.
    ///   - timeout: Ends the call if it runs longer, with ``MariaDBError/Kind/timedOut``; `nil`
    ///     for the session's limit.
    ///   - fileID: Where the call is, for reports; leave the default.
    ///   - line: Where the call is, for reports; leave the default.
    /// - Returns: The number of rows inserted, updated or deleted.
    /// - Throws: ``MariaDBError`` whose ``MariaDBError/row`` names the row the server refused
    ///   (MariaDB 10.7 and later say which; older servers leave it `nil` in bulk commands), or
    ///   that a row's number of values does not match the placeholders; ``SQLEncodingError``
    ///   naming the row and parameter of a value that cannot be sent (an array, or a type other
    ///   than the parameter's in earlier rows); `CancellationError` when the task was cancelled.
    @discardableResult
    public func executeMany(
        _ statement: SQLQuery,
        rows: [[SQLValue]],
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> Int {
        guard let tracer = SQLTracing.tracer else {
            return try await executeManyUntraced(statement, rows: rows, timeout: timeout, fileID: fileID, line: line)
        }
        return try await SQLTracing.withSpan(
            tracer,
            MariaDBSession.self,
            query: statement,
            name: MariaDBSession.tracingSystemName,
            target: tracingTarget
        ) { span in
            span.attributes["db.operation.batch.size"] = rows.count
            return try await executeManyUntraced(statement, rows: rows, timeout: timeout, fileID: fileID, line: line)
        }
    }

    private func executeManyUntraced(
        _ statement: SQLQuery,
        rows: [[SQLValue]],
        timeout: Duration?,
        fileID: StaticString,
        line: UInt
    ) async throws -> Int {
        let start = monotonicNanoseconds()
        let limit = (timeout ?? defaultTimeout).map(SQLTimeout.init)
        do {
            let affected = try await withSession(
                timeout: limit,
                statement: statement,
                at: CallSite(fileID: fileID, line: line)
            ) { session in
                try session.executeMany(
                    statement,
                    rows: rows,
                    statementTimeout: session.serverEndsTimeouts ? limit?.duration : nil
                )
            }
            metrics.record(statement, start: start, errorType: nil)
            return affected
        } catch {
            metrics.record(statement, start: start, errorType: SQLTracing.errorType(of: error, MariaDBSession.self))
            throw error
        }
    }
}

extension SQLClient where Session == MariaDBSession {
    /// Runs one statement for each of many rows of values on a pooled connection (see
    /// ``SQLConnection/executeMany(_:rows:timeout:fileID:line:)``), and returns the rows affected
    /// in all.
    ///
    /// - Parameters:
    ///   - statement: The statement, with a `?` for each of a row's values.
    ///   - rows: Each row's values, in the order of the placeholders.
    ///   - timeout: Ends the call if it runs longer; `nil` for the session's limit.
    ///   - fileID: Where the call is, for reports; leave the default.
    ///   - line: Where the call is, for reports; leave the default.
    /// - Returns: The number of rows inserted, updated or deleted.
    /// - Throws: As ``SQLConnection/executeMany(_:rows:timeout:fileID:line:)``;
    ///   ``ConnectionPoolError`` when no connection is free within the acquire timeout.
    @discardableResult
    public func executeMany(
        _ statement: SQLQuery,
        rows: [[SQLValue]],
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> Int {
        try await withLeasedConnection(at: CallSite(fileID: fileID, line: line)) { connection in
            try await connection.executeMany(statement, rows: rows, timeout: timeout, fileID: fileID, line: line)
        }
    }
}
