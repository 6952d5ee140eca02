import SyncBridge
public import SyncBridgeSQL
import Synchronization
import Tracing

extension PostgresConnection {
    /// Runs `statements` in one round trip, with libpq's pipeline mode, and returns each one's
    /// outcome — its rows and affected count, or its error — in order.
    ///
    /// ```swift
    /// let results = try await connection.pipeline(orders.map { order in
    ///     "INSERT INTO orders (id, total) VALUES (\(order.id), \(order.total))"
    /// })
    /// for case .failure(let error) in results { print(error) }
    /// ```
    ///
    /// Every statement is sent without waiting for the one before, each followed by its own sync
    /// point, so on a network where a round trip costs more than a statement the batch takes about
    /// one round trip. What a failure does:
    ///
    /// - Outside a transaction, each statement commits on its own: a failed one fails alone, and
    ///   the statements before and after it take effect.
    /// - Inside a transaction (``SQLConnection/withTransaction(isolation:readOnly:fileID:line:_:)``),
    ///   the server refuses every statement after a failed one (SQLSTATE 25P02) and the
    ///   transaction is aborted: `COMMIT` then fails with 25P02 and nothing of it stands. A
    ///   transaction is how a batch becomes all or nothing.
    /// - A statement whose values cannot be encoded is not sent and fails alone.
    ///
    /// At most 256 statements are in flight ahead of the one being answered. Cancelling the task
    /// cancels the statement running on the server and sends no more; the call throws
    /// `CancellationError` once the server has answered those already sent. Outside a
    /// transaction those run and stand; inside one, the cancelled statement aborts the
    /// transaction and the rest with it. A `timeout` does the same when it passes and throws the
    /// typed timeout error (``PostgresError/Kind/timedOut``). The session's `statement_timeout`
    /// applies to each statement on its own; a client-kept default (behind a transaction pooler)
    /// does not, so pass `timeout` there.
    ///
    /// Prepared statements this connection already has are used; outside a transaction, a
    /// statement that appears more than once in `statements` is prepared first (one round trip
    /// per such statement, once per connection); the others are sent unnamed, parsed with their
    /// execution. Behind a transaction pooler every statement is sent unnamed. While a row
    /// stream is open the connection is busy and the pipeline fails at once.
    ///
    /// - Parameters:
    ///   - statements: The statements, with bound parameters.
    ///   - timeout: Ends the pipeline when it passes; `nil` for no limit beyond the session's.
    /// - Returns: One outcome per statement, in the same order.
    /// - Throws: ``PostgresError`` when the connection fails (then which statements ran is
    ///   unknown) or the timeout passed; `CancellationError` when the task was cancelled.
    public func pipeline(
        _ statements: [SQLQuery],
        timeout: Duration? = nil
    ) async throws -> [Result<SQLOutcome, any Error>] {
        try await tracedPipeline(statements, timeout: timeout, atomic: false) { $0 }
    }

    /// Runs `statements` in one round trip as one implicit transaction: either every statement
    /// takes effect or none does. Returns each one's outcome in order, or throws the first
    /// failure.
    ///
    /// ```swift
    /// let outcomes = try await connection.atomicPipeline(lines.map { line in
    ///     "INSERT INTO order_lines (order_id, sku, quantity) VALUES (\(id), \(line.sku), \(line.quantity))"
    /// })
    /// ```
    ///
    /// Like ``pipeline(_:timeout:)``, the statements are sent without waiting for one another,
    /// but with one sync point for the whole batch, after its last statement, as `pgbench`'s
    /// `\startpipeline` … `\endpipeline` does. The server then ends its implicit transaction
    /// once, not after every statement, which makes a batch of short statements several times
    /// faster. What a failure does:
    ///
    /// - Outside a transaction, the batch is one implicit transaction: when a statement fails,
    ///   the server runs none of those after it and undoes those before it; the call throws the
    ///   failed statement's error, whose ``PostgresError/statementIndex`` says which it was.
    /// - Inside a transaction (``SQLConnection/withTransaction(isolation:readOnly:fileID:line:_:)``),
    ///   a failure aborts the transaction, as any failed statement does.
    /// - A statement whose values cannot be encoded fails the call before anything is sent.
    ///
    /// The statements must not end or start a transaction themselves (`COMMIT`, `BEGIN`), and
    /// the batch cannot hold statements that refuse to run in a transaction block (`VACUUM`,
    /// `CREATE DATABASE`). Cancellation and `timeout` stop the batch as they stop
    /// ``pipeline(_:timeout:)``'s, and then nothing of it stands (outside a transaction).
    ///
    /// - Parameters:
    ///   - statements: The statements, with bound parameters.
    ///   - timeout: Ends the pipeline when it passes; `nil` for no limit beyond the session's.
    /// - Returns: One outcome per statement, in the same order.
    /// - Throws: The first failed statement's ``PostgresError`` (with its
    ///   ``PostgresError/statementIndex``); ``SQLEncodingError`` for a value that cannot be sent;
    ///   ``PostgresError`` when the connection fails (then whether the batch committed is
    ///   unknown) or the timeout passed; `CancellationError` when the task was cancelled.
    public func atomicPipeline(
        _ statements: [SQLQuery],
        timeout: Duration? = nil
    ) async throws -> [SQLOutcome] {
        try await tracedPipeline(statements, timeout: timeout, atomic: true, Self.allOrNothing)
    }

    /// Runs a pipeline in a `pipeline` span (when a tracer is bootstrapped) with its batch size;
    /// `finish` turns the outcomes into the call's result, inside the span, so that an error it
    /// throws is the span's.
    private func tracedPipeline<Output: Sendable>(
        _ statements: [SQLQuery],
        timeout: Duration?,
        atomic: Bool,
        _ finish: @escaping @Sendable ([Result<SQLOutcome, any Error>]) throws -> Output
    ) async throws -> Output {
        guard let tracer = SQLTracing.tracer else {
            return try finish(await pipelineUntraced(statements, timeout: timeout, atomic: atomic))
        }
        return try await SQLTracing.withSpan(
            tracer,
            PostgresSession.self,
            query: nil,
            name: "pipeline",
            target: tracingTarget
        ) { span in
            span.attributes["db.operation.batch.size"] = statements.count
            return try finish(await pipelineUntraced(statements, timeout: timeout, atomic: atomic))
        }
    }

    /// The outcomes of an atomic pipeline, or its first failure, which names its statement.
    static func allOrNothing(_ results: [Result<SQLOutcome, any Error>]) throws -> [SQLOutcome] {
        try results.enumerated().map { index, result in
            switch result {
            case .success(let outcome):
                return outcome
            case .failure(var error as PostgresError):
                error.statementIndex = index
                throw error
            case .failure(let error):
                throw error
            }
        }
    }

    func pipelineUntraced(
        _ statements: [SQLQuery],
        timeout: Duration?,
        atomic: Bool = false
    ) async throws -> [Result<SQLOutcome, any Error>] {
        let limit = timeout.map(SQLTimeout.init)
        let cancelled = Mutex(false)
        let outcomes = try await withTaskCancellationHandler {
            try await withSession(timeout: limit) { session in
                try session.runPipeline(statements, atomic: atomic) {
                    cancelled.withLock { $0 } || limit.map { monotonicNanoseconds() >= $0.deadline } == true
                }
            }
        } onCancel: {
            cancelled.withLock { $0 = true }
        }
        // The server can answer the cancel request (57014 for the statement it was running) and
        // the statements after it before the pipeline's loop sees the flag or the deadline: the
        // call still ends as the cancellation or the timeout it is.
        if cancelled.withLock({ $0 }) { throw CancellationError() }
        if let limit, monotonicNanoseconds() >= limit.deadline,
            let index = outcomes.firstIndex(where: { outcome in
                if case .failure(let error as PostgresError) = outcome { return error.isQueryCanceled }
                return false
            })
        {
            throw PostgresSession.timeoutError(limit, query: statements[index])
        }
        return outcomes
    }
}

extension PostgresClient {
    /// Runs `statements` in one round trip on a pooled connection as one implicit transaction
    /// (see ``SQLConnection/atomicPipeline(_:timeout:)``): either every statement takes effect or
    /// none does.
    ///
    /// - Parameters:
    ///   - statements: The statements, with bound parameters.
    ///   - timeout: Ends the pipeline when it passes; `nil` for no limit beyond the session's.
    ///   - fileID: Where the call is, for reports; leave the default.
    ///   - line: Where the call is, for reports; leave the default.
    /// - Returns: One outcome per statement, in the same order.
    /// - Throws: As ``SQLConnection/atomicPipeline(_:timeout:)``; ``ConnectionPoolError`` when no
    ///   connection is free within the acquire timeout.
    public func atomicPipeline(
        _ statements: [SQLQuery],
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> [SQLOutcome] {
        try await withLeasedConnection(at: CallSite(fileID: fileID, line: line)) { connection in
            try await connection.atomicPipeline(statements, timeout: timeout)
        }
    }

    /// Runs `statements` in one round trip on a pooled connection (see
    /// ``SQLConnection/pipeline(_:timeout:)``), and returns each one's outcome in order.
    ///
    /// - Parameters:
    ///   - statements: The statements, with bound parameters.
    ///   - timeout: Ends the pipeline when it passes; `nil` for no limit beyond the session's.
    ///   - fileID: Where the call is, for reports; leave the default.
    ///   - line: Where the call is, for reports; leave the default.
    /// - Returns: One outcome per statement, in the same order.
    /// - Throws: As ``SQLConnection/pipeline(_:timeout:)``; ``ConnectionPoolError`` when no connection is
    ///   free within the acquire timeout.
    public func pipeline(
        _ statements: [SQLQuery],
        timeout: Duration? = nil,
        fileID: StaticString = #fileID,
        line: UInt = #line
    ) async throws -> [Result<SQLOutcome, any Error>] {
        try await withLeasedConnection(at: CallSite(fileID: fileID, line: line)) { connection in
            try await connection.pipeline(statements, timeout: timeout)
        }
    }
}
