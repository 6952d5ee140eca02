import CLibPQ
import DequeModule
import SyncBridge
public import SyncBridgeSQL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension PostgresSession: SQLNonBlockingSession, SQLTransactionStartPipelining {
    /// libpq's socket (`PQsocket`).
    public var ioSocket: Int32 { PQsocket(connection) }

    /// 64 statements; one behind a transaction pooler, which sees each statement and its sync
    /// point alone, as from the blocking path: PgBouncer hands a server connection to another
    /// client when a transaction ends, and statements sent behind one in flight were not shown
    /// to follow it safely on every pooler version.
    public var pipelineCapacity: Int { isBehindTransactionPooler ? 1 : 64 }

    /// Sends `query` in libpq's pipeline mode with a sync point of its own: prepared on its first
    /// use (`PQsendPrepare` and `PQsendQueryPrepared` together, one round trip), then by name.
    /// The timeout is not sent: the connection cancels the statement at its deadline.
    public func sendStatement(_ query: SQLQuery, timeout: SQLTimeout?) throws {
        try send(query, startingTransaction: [])
    }

    /// Sends `start` (`BEGIN …`) and `query` behind one sync point: a failed `BEGIN` aborts the
    /// pipeline up to the sync point, so the server skips `query`.
    public func sendStatement(_ query: SQLQuery, timeout: SQLTimeout?, startingTransaction start: [String]) throws {
        try send(query, startingTransaction: start)
    }

    private func send(_ query: SQLQuery, startingTransaction start: [String]) throws {
        try refuseWhileStreaming()
        let statement = try Statement(query)
        if PQpipelineStatus(connection) == PQ_PIPELINE_OFF {
            guard PQenterPipelineMode(connection) == 1 else { throw connectionError(query: statement.sql) }
            PQsetnonblocking(connection, 1)
        }
        // The third statement of a burst and those after it are held back until the poll that
        // follows the burst: libpq 15 flushes at every sync point, and one push for the rest of
        // the burst costs the kernel (and wakes the server) once instead of once per statement.
        // The first two leave at once, uncorked: a burst of one or two — the usual ones with a
        // task or two per connection — costs a `send` each, not two `setsockopt`s more (with two
        // tasks per connection on its I/O thread, nearly every burst has two statements).
        if pipeline.sentThisTurn > 1 { cork(true) }
        pipeline.sentThisTurn += 1
        var unit = PipelineUnit(sql: statement.sql)
        unit.key = statement.key
        var prepareAs: String?
        if usesNamedStatements {
            if let name = statements.statement(for: statement.key) {
                unit.name = name
            } else {
                let name = "sb_\(nextStatementNumber)"
                nextStatementNumber += 1
                // The statement the cache lets go is freed first (its own unit, before this
                // one's), as the blocking path does: the server never holds more than the
                // cache's capacity.
                if let evicted = statements.insert(name, for: statement.key), !isBehindTransactionPooler {
                    try sendDeallocate(evicted)
                }
                unit.name = name
                prepareAs = name
            }
        }
        for sql in start {
            guard PQsendQueryParams(connection, sql, 0, nil, nil, nil, nil, 0) == 1 else {
                throw failPipeline(connectionError(query: sql))
            }
            unit.startCommandsLeft += 1
            unit.commandsLeft += 1
        }
        if let name = prepareAs {
            let prepared = statement.types.withUnsafeBufferPointer { types in
                PQsendPrepare(connection, name, statement.sql, Int32(types.count), types.baseAddress)
            }
            guard prepared == 1 else { throw failPipeline(connectionError(query: statement.sql)) }
            unit.prepares = true
            unit.commandsLeft += 1
        }
        do {
            try send(statement, name: unit.name)
        } catch {
            throw failPipeline(error)
        }
        guard PQpipelineSync(connection) == 1 else { throw failPipeline(connectionError(query: statement.sql)) }
        pipeline.units.append(unit)
    }

    /// Pushes the burst just sent (uncorks, `PQflush`) without reading: every result that had
    /// arrived was taken by the last poll, and the server has seldom answered yet, so a read
    /// here would mostly cost a `recv` that finds nothing. The socket's readiness says when to
    /// poll.
    public func flushStatements() throws -> SQLStatementPoll {
        guard !pipeline.units.isEmpty else { return try pollStatements() }
        cork(false)
        pipeline.sentThisTurn = 0
        let flushed = PQflush(connection)
        guard flushed >= 0 else { throw failPipeline(connectionError(query: nil)) }
        return SQLStatementPoll(results: [], waitFor: flushed == 1 ? [.readable, .writable] : .readable)
    }

    /// Reads the results that arrived (`PQconsumeInput`, `PQisBusy`, `PQgetResult`) and sends
    /// what is left (`PQflush`).
    public func pollStatements() throws -> SQLStatementPoll {
        cork(false)
        pipeline.sentThisTurn = 0
        guard !pipeline.units.isEmpty else { return SQLStatementPoll(results: [], waitFor: nil) }
        guard PQconsumeInput(connection) == 1 else { throw failPipeline(connectionError(query: nil)) }
        var results: [Result<SQLOutcome, any Error>] = []
        while !pipeline.units.isEmpty, PQisBusy(connection) == 0 {
            let result = PQgetResult(connection)
            if pipeline.units[0].commandsLeft > 0 {
                guard let result else {
                    // The end of one command's results.
                    pipeline.units[0].commandsLeft -= 1
                    if pipeline.units[0].startCommandsLeft > 0 { pipeline.units[0].startCommandsLeft -= 1 }
                    continue
                }
                if !record(result) { PQclear(result) }
                continue
            }
            guard let result else { continue }
            let status = PQresultStatus(result)
            PQclear(result)
            guard status == PGRES_PIPELINE_SYNC else {
                throw failPipeline(
                    PostgresError(
                        kind: .protocolViolation,
                        message: "expected the pipeline's sync point, got \(String(cString: PQresStatus(status)))",
                        sqlState: "XX000"
                    )
                )
            }
            let unit = pipeline.units.removeFirst()
            if let result = try finish(unit) { results.append(result) }
        }
        let flushed = PQflush(connection)
        guard flushed >= 0 else { throw failPipeline(connectionError(query: nil)) }
        if pipeline.units.isEmpty {
            leavePipeline()
            return SQLStatementPoll(results: results, waitFor: nil)
        }
        return SQLStatementPoll(results: results, waitFor: flushed == 1 ? [.readable, .writable] : .readable)
    }

    /// Keeps what one result of the oldest unit says: the first error, else the execution's
    /// outcome (a prepare's success says nothing).
    ///
    /// - Returns: Whether the outcome took `result` over (its rows are left for the caller to
    ///   decode), so that it must not be cleared.
    private func record(_ result: OpaquePointer) -> Bool {
        let unit = pipeline.units[0]
        if unit.startCommandsLeft > 0 {
            // A result of the transaction's start: only its failure says something.
            if unit.result == nil {
                do {
                    _ = try outcome(of: result, sql: nil)
                } catch {
                    pipeline.units[0].result = .failure(SQLTransactionNotStarted(underlying: error))
                }
            }
            return false
        }
        let isPrepare = unit.prepares && unit.commandsLeft == 2
        guard !unit.isDeallocation, case .success? = unit.result ?? .success(SQLOutcome(rows: [], rowsAffected: 0))
        else { return false }
        if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
            // Only after a failure before the same sync point, which is recorded already.
            return false
        }
        if PQresultStatus(result) == PGRES_SINGLE_TUPLE {
            // A stream just before left libpq in single-row mode, which libpq clears only when
            // a statement is sent outside pipeline mode: this statement's rows come one result
            // each, then an empty `PGRES_TUPLES_OK`.
            pipeline.units[0].singleRows.append(contentsOf: Self.rows(of: result))
            return false
        }
        defer { pipeline.units[0].singleRows = [] }
        if !isPrepare, unit.singleRows.isEmpty, let outcome = Self.deferredOutcome(of: result) {
            pipeline.units[0].result = .success(outcome)
            return true
        }
        do {
            let outcome = try outcome(of: result, sql: unit.sql, after: unit.singleRows)
            if !isPrepare, let refusal = Self.refusedCommit(unit.sql, result) { throw refusal }
            if !isPrepare { pipeline.units[0].result = .success(outcome) }
        } catch {
            pipeline.units[0].result = .failure(error)
        }
        return false
    }

    /// An outcome that takes `result` over and leaves its rows for the caller to decode
    /// (``SQLDeferredRows``), when they are more than 16 values or more than 32 KiB; `nil` for
    /// any other result, which the I/O thread decodes at once (cheaper than handing it over).
    package static func deferredOutcome(of result: OpaquePointer) -> SQLOutcome? {
        guard PQresultStatus(result) == PGRES_TUPLES_OK else { return nil }
        let rowCount = PQntuples(result)
        let columnCount = PQnfields(result)
        if Int(rowCount) * Int(columnCount) <= 16 {
            var bytes = 0
            for row in 0..<rowCount {
                for column in 0..<columnCount { bytes += Int(PQgetlength(result, row, column)) }
            }
            guard bytes > 32 * 1024 else { return nil }
        }
        let owned = LibpqResult(result)
        return SQLOutcome(deferredRows: SQLDeferredRows { rows(of: owned.pointer) }, rowsAffected: Int(rowCount))
    }

    /// The result of a unit that ended; `nil` for the session's own units (deallocations).
    private func finish(_ unit: PipelineUnit) throws -> Result<SQLOutcome, any Error>? {
        guard !unit.isDeallocation else { return nil }
        // Judged again at the sync point: the server reports a changed setting (a server turned
        // read-only) just before it, after the error.
        if case .failure(let error as PostgresError)? = unit.result, cannotServeAsPrimary(after: error) {
            isBroken = true
        }
        guard let result = unit.result else {
            return .failure(
                PostgresError(kind: .protocolViolation, message: "the statement had no result", sqlState: "XX000")
            )
        }
        if case .failure(let failure as SQLTransactionNotStarted) = result, unit.prepares, let name = unit.name {
            // The transaction's start failed, so the server skipped the prepare: forget the name.
            if let key = unit.key, statements.statement(for: key) == name { _ = statements.remove(key) }
            if let error = failure.underlying as? PostgresError { pipeline.failedPrepares[name] = error }
            return result
        }
        guard case .failure(let error as PostgresError) = result, let name = unit.name else { return result }
        if unit.prepares {
            // Not prepared: forget the name, and give statements sent behind with it this error.
            if let key = unit.key, statements.statement(for: key) == name { _ = statements.remove(key) }
            pipeline.failedPrepares[name] = error
            return result
        }
        if error.sqlState == "26000", let failure = pipeline.failedPrepares[name] { return .failure(failure) }
        if error.sqlState == "0A000", error.message.contains("cached plan") {
            // The table changed shape under the prepared statement: the next use prepares it anew.
            if let key = unit.key, statements.statement(for: key) == name { _ = statements.remove(key) }
            if !isBehindTransactionPooler { try sendDeallocate(name) }
        }
        return result
    }

    /// Frees a prepared statement on the server, in the pipeline (its result is not reported).
    private func sendDeallocate(_ name: String) throws {
        let sent = PQsendQueryParams(connection, "DEALLOCATE \(name)", 0, nil, nil, nil, nil, 0)
        guard sent == 1, PQpipelineSync(connection) == 1 else { throw failPipeline(connectionError(query: nil)) }
        var unit = PipelineUnit(sql: "DEALLOCATE \(name)")
        unit.isDeallocation = true
        pipeline.units.append(unit)
    }

    /// The connection failed: nothing in flight can be read any more.
    private func failPipeline(_ error: any Error) -> any Error {
        if !isHealthy || (error as? PostgresError)?.kind == .connectionClosed {
            isBroken = true
            pipeline = PipelineState()
        }
        return error
    }

    /// Corks or uncorks a TCP socket (`TCP_CORK`): uncorking sends what was held back. Nothing on
    /// a Unix-domain socket, which sends each write at once anyway. (libpq 15 flushes at every
    /// sync point: corked, a burst of statements leaves in full segments, at one push.)
    func cork(_ on: Bool) {
        guard on != pipeline.corked, pipeline.corkable else { return }
        var value: Int32 = on ? 1 : 0
        let socket = PQsocket(connection)
        if setsockopt(socket, Int32(IPPROTO_TCP), TCP_CORK, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 {
            pipeline.corked = on
        } else {
            pipeline.corkable = false
        }
    }

    /// Every unit is read: back to blocking calls.
    private func leavePipeline() {
        pipeline.failedPrepares.removeAll()
        if PQpipelineStatus(connection) != PQ_PIPELINE_OFF { _ = PQexitPipelineMode(connection) }
        PQsetnonblocking(connection, 0)
    }
}

/// The statements an I/O thread has in flight on a session, oldest first.
struct PipelineState {
    var units: Deque<PipelineUnit> = []
    /// The errors of prepares that failed while statements sent behind them used their names.
    var failedPrepares: [String: PostgresError] = [:]
    /// Whether the socket is corked (`TCP_CORK`): writes wait for the next poll.
    var corked = false
    /// Cleared once corking failed (a Unix-domain socket).
    var corkable = true
    /// Statements sent since the last poll: the burst so far.
    var sentThisTurn = 0
}

/// One statement (or one of the session's own commands) in the pipeline, up to its sync point.
struct PipelineUnit {
    let sql: String
    /// The statement's key in the session's cache.
    var key: PostgresSession.StatementKey?
    /// The prepared statement's name; `nil` for an unnamed statement.
    var name: String?
    /// Whether the unit prepares `name` before executing it.
    var prepares = false
    /// A deallocation of the session's, whose result no caller waits for.
    var isDeallocation = false
    /// The commands whose results are still to be read (prepare and execute: 2; the
    /// transaction's start sent with the statement, one more each).
    var commandsLeft = 1
    /// The commands of the transaction's start (sent first) whose results are still to be read.
    var startCommandsLeft = 0
    /// The first error, or the execution's outcome.
    var result: Result<SQLOutcome, any Error>?
    /// The rows read so far when they come one result each (single-row mode left on by a stream).
    var singleRows: [SQLRow] = []

    init(sql: String) {
        self.sql = sql
    }
}

/// A libpq result that an outcome took over, freed (`PQclear`) with its last reference.
final class LibpqResult: @unchecked Sendable {
    // Safe to share: libpq documents a `PGresult` as read-only once made ("can be passed around
    // freely between threads"); nothing here modifies it, and `deinit` frees it only once no
    // thread holds this object.
    let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit {
        PQclear(pointer)
    }
}
