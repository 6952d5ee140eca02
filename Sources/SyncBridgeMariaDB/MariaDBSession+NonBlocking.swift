import CMariaDB
import SyncBridge
public import SyncBridgeSQL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension MariaDBSession: SQLNonBlockingSession {
    /// Connector/C's socket (`mysql_get_socket`).
    public var ioSocket: Int32 { Int32(truncatingIfNeeded: mysql_get_socket(mysql)) }

    /// Not over TLS: Connector/C 3.3's non-blocking calls do not cover its TLS reads, so an
    /// encrypted connection keeps its own thread.
    public var usesIOThreads: Bool { mysql_get_ssl_cipher(mysql) == nil }

    /// 1: Connector/C runs one command at a time on a connection.
    public var pipelineCapacity: Int { 1 }

    /// Queues `query` for ``pollStatements()``, which runs it with Connector/C's non-blocking
    /// calls as the blocking path does: prepared on first use (`mysql_stmt_prepare_start`),
    /// executed with its values bound (`mysql_stmt_execute_start`), its rows read in one go
    /// (`mysql_stmt_store_result_start`). With a `timeout` the server ends itself, the statement
    /// carries it (`SET STATEMENT max_statement_time = … FOR`).
    ///
    /// - Throws: ``MariaDBError`` when another statement's rows are being streamed, or when
    ///   Connector/C cannot set up its non-blocking calls.
    public func sendStatement(_ query: SQLQuery, timeout: SQLTimeout?) throws {
        try refuseWhileStreaming()
        precondition(nonBlockingStatement == nil, "MariaDBSession: a statement is already in flight")
        if !allowsNonBlockingCalls {
            // A context of Connector/C's default stack size, kept until the connection closes.
            var stackSize = 0
            guard mysql_options(mysql, MYSQL_OPT_NONBLOCK, &stackSize) == 0 else {
                throw MariaDBError(
                    kind: .client,
                    message: "Connector/C could not set up its non-blocking calls (MYSQL_OPT_NONBLOCK)"
                )
            }
            allowsNonBlockingCalls = true
        }
        let text = Self.text(of: query, timeout: serverEndsTimeouts ? timeout?.duration : nil)
        nonBlockingStatement = NonBlockingStatement(query: query, sql: text)
    }

    /// Continues the statement in flight where Connector/C left it, until it ends or waits for
    /// the socket again.
    public func pollStatements() throws -> SQLStatementPoll {
        guard let statement = nonBlockingStatement else { return SQLStatementPoll(results: [], waitFor: nil) }
        let result: Result<SQLOutcome, any Error>
        do {
            guard let outcome = try advance(statement) else {
                return SQLStatementPoll(results: [], waitFor: statement.interest, timeout: statement.timeout)
            }
            result = .success(outcome)
        } catch {
            result = .failure(error)
        }
        nonBlockingStatement = nil
        return SQLStatementPoll(results: [result], waitFor: nil)
    }

    /// Runs `statement`'s steps until one waits for the socket (`nil`) or the statement ends.
    ///
    /// Each step is one Connector/C call, started with `_start` and, while it waits, continued
    /// with `_cont` once the socket is ready. Freeing a stored result and closing a statement
    /// whose prepare failed do no I/O; closing a statement the cache lets go (or that must be
    /// prepared anew) writes one short packet and reads nothing, on a socket whose earlier
    /// requests the server has all answered.
    private func advance(_ statement: NonBlockingStatement) throws -> SQLOutcome? {
        while true {
            var returned: Int32 = 0
            let waitsFor: Int32
            switch statement.step {
            case .start:
                if let prepared = statements.statement(for: statement.sql) {
                    statement.enter(.executing(prepared))
                } else {
                    guard let handle = mysql_stmt_init(mysql) else { throw connectionError(query: statement.sql) }
                    statement.enter(.preparing(handle))
                }
                continue

            case .preparing(let handle):
                waitsFor =
                    statement.isWaiting
                    ? mysql_stmt_prepare_cont(&returned, handle, statement.readiness(on: ioSocket))
                    : mysql_stmt_prepare_start(&returned, handle, statement.text, statement.length)
                if statement.waits(for: waitsFor, on: mysql) { return nil }
                let prepared = MariaDBPreparedStatement(handle: handle, sql: statement.sql)
                guard returned == 0 else {
                    let error = statementError(prepared)
                    prepared.close()
                    throw error
                }
                statements.insert(prepared, for: statement.sql)?.close()
                statement.enter(.executing(prepared))

            case .executing(let prepared):
                if statement.isWaiting {
                    waitsFor = mysql_stmt_execute_cont(&returned, prepared.handle, statement.readiness(on: ioSocket))
                } else {
                    try Self.checkParameterCount(of: prepared, against: statement.query)
                    // Connector/C copies the bound values into its request before it first waits.
                    waitsFor = try ParameterBinding.withBound(statement.query.bindings, to: prepared) {
                        mysql_stmt_execute_start(&returned, prepared.handle)
                    }
                }
                if statement.waits(for: waitsFor, on: mysql) { return nil }
                guard returned == 0 else {
                    let error = statementError(prepared)
                    if try preparesAgain(after: error, of: prepared, attempt: statement.attempt) {
                        statement.attempt += 1
                        statement.enter(.start)
                        continue
                    }
                    // Out of sync: the connection cannot be trusted with another statement.
                    if error.kind == .client && error.number == 2014 { markBroken() }
                    throw error
                }
                try prepared.readMetadata(session: self)
                guard prepared.columns != nil else {
                    return SQLOutcome(
                        rows: [],
                        rowsAffected: Int(clamping: mysql_stmt_affected_rows(prepared.handle)),
                        lastInsertID: mysql_stmt_insert_id(prepared.handle)
                    )
                }
                statement.enter(.storing(prepared, keepsRows: true))

            case .storing(let prepared, let keepsRows):
                waitsFor =
                    statement.isWaiting
                    ? mysql_stmt_store_result_cont(&returned, prepared.handle, statement.readiness(on: ioSocket))
                    : mysql_stmt_store_result_start(&returned, prepared.handle)
                if statement.waits(for: waitsFor, on: mysql) { return nil }
                guard returned == 0 else { throw failedMidResult(prepared) }
                if keepsRows { statement.outcome = try storedRows(of: prepared) }
                statement.enter(.finishing(prepared))

            case .finishing(let prepared):
                // Skips any further result sets (a `CALL` sends a status result after its rows).
                if statement.isWaiting {
                    waitsFor = mysql_stmt_next_result_cont(
                        &returned,
                        prepared.handle,
                        statement.readiness(on: ioSocket)
                    )
                } else {
                    mysql_stmt_free_result(prepared.handle)
                    guard mysql_stmt_more_results(prepared.handle) != 0 else { return statement.outcome }
                    waitsFor = mysql_stmt_next_result_start(&returned, prepared.handle)
                }
                if statement.waits(for: waitsFor, on: mysql) { return nil }
                if returned > 0 { throw failedMidResult(prepared) }
                if returned < 0 { return statement.outcome }
                if prepared.handle.pointee.field_count > 0 {
                    // A further result set: read and dropped.
                    statement.enter(.storing(prepared, keepsRows: false))
                } else {
                    statement.enter(.finishing(prepared))
                }
            }
        }
    }

    /// The rows `mysql_stmt_store_result` read, decoded (no I/O).
    private func storedRows(of prepared: MariaDBPreparedStatement) throws -> SQLOutcome {
        guard let columns = prepared.columns else { return SQLOutcome(rows: [], rowsAffected: 0) }
        var values: [SQLValue] = []
        values.reserveCapacity(Int(clamping: mysql_stmt_num_rows(prepared.handle)) * columns.all.count)
        var rowCount = 0
        do {
            while try prepared.fetchRow(into: &values, session: self) { rowCount += 1 }
        } catch {
            _ = failedMidResult(prepared)
            throw error
        }
        let rows = SQLRow.rows(columns: columns, values: values, rowCount: rowCount)
        return SQLOutcome(rows: rows, rowsAffected: rowCount, lastInsertID: 0)
    }

    /// The error of a statement that failed after its result began (killed, timed out, or cut
    /// off while its rows came): the statement is closed and prepared anew on its next use.
    ///
    /// Connector/C leaves such a statement mid-result; its next execution would first read the
    /// rest of a result the server has already ended — for ever. The blocking path resets it
    /// (`mysql_stmt_reset`, a round trip); here closing it costs one write and no read, since the
    /// server has answered everything sent before.
    private func failedMidResult(_ prepared: MariaDBPreparedStatement) -> MariaDBError {
        let error = statementError(prepared)
        forget(prepared)
        return error
    }
}

/// A statement on its way through Connector/C's non-blocking calls: the step it is at and what
/// that step's call waits for.
final class NonBlockingStatement {
    enum Step {
        /// Not started: prepares it, or executes the cached statement.
        case start
        /// `mysql_stmt_prepare_start`.
        case preparing(UnsafeMutablePointer<MYSQL_STMT>)
        /// `mysql_stmt_execute_start`, with the values bound.
        case executing(MariaDBPreparedStatement)
        /// `mysql_stmt_store_result_start`: every row into memory; kept for the statement's
        /// result, dropped for the further result sets that follow it.
        case storing(MariaDBPreparedStatement, keepsRows: Bool)
        /// `mysql_stmt_next_result_start`, while more result sets follow.
        case finishing(MariaDBPreparedStatement)
    }

    let query: SQLQuery
    let sql: String
    /// `sql` as C text, alive while Connector/C may still read it.
    let text: UnsafeMutablePointer<CChar>
    let length: UInt
    private(set) var step = Step.start
    /// What the current step's call waits for (`MYSQL_WAIT_*`); 0 before it starts.
    private(set) var waitingFor: Int32 = 0
    /// 1, then 2 when the statement is prepared anew and run once more.
    var attempt = 1
    /// The result, once its rows are read and further result sets are skipped.
    var outcome: SQLOutcome?

    init(query: SQLQuery, sql: String) {
        self.query = query
        self.sql = sql
        let bytes = sql.utf8
        let text = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
        var end = text
        for byte in bytes {
            end.pointee = CChar(bitPattern: byte)
            end += 1
        }
        end.pointee = 0
        self.text = text
        self.length = UInt(bytes.count)
    }

    deinit {
        text.deallocate()
    }

    /// Whether the current step's call waits for the socket (continue it with `_cont`).
    var isWaiting: Bool { waitingFor != 0 }

    /// When the current call's wait times out (monotonic nanoseconds), if Connector/C gave it a
    /// timeout (its read or write timeout).
    private var deadline: UInt64?

    /// What to tell `_cont` about `socket`: that it is ready for what the call waited for, or,
    /// once the call's deadline has passed and the socket is still not ready, that the wait timed
    /// out (Connector/C then fails the call, as its blocking read does).
    ///
    /// Past the deadline the socket is asked again (`poll`, without waiting): an I/O thread held
    /// up beyond the deadline (by other connections' work, or a loaded machine) finds an answer
    /// that arrived in time, and must not fail the statement for its own delay.
    func readiness(on socket: Int32) -> Int32 {
        let waited = waitingFor & ~MYSQL_WAIT_TIMEOUT
        guard let deadline, monotonicNanoseconds() >= deadline else { return waited }
        var events: Int16 = 0
        if waited & MYSQL_WAIT_READ != 0 { events |= Int16(POLLIN) }
        if waited & MYSQL_WAIT_WRITE != 0 { events |= Int16(POLLOUT) }
        if waited & MYSQL_WAIT_EXCEPT != 0 { events |= Int16(POLLPRI) }
        var descriptor = pollfd(fd: socket, events: events, revents: 0)
        guard poll(&descriptor, 1, 0) == 1 else { return MYSQL_WAIT_TIMEOUT }
        var ready: Int32 = 0
        let revents = Int32(descriptor.revents)
        // A hang-up or an error is read as readable: the read then reports it.
        if revents & (Int32(POLLIN) | Int32(POLLHUP) | Int32(POLLERR)) != 0 { ready |= MYSQL_WAIT_READ }
        if revents & Int32(POLLOUT) != 0 { ready |= MYSQL_WAIT_WRITE }
        if revents & Int32(POLLPRI) != 0 { ready |= MYSQL_WAIT_EXCEPT }
        return ready & waited == 0 ? waited : ready & waited
    }

    /// How long the current call waits at most.
    var timeout: Duration? {
        deadline.map { .nanoseconds(Int64(clamping: $0 &- min($0, monotonicNanoseconds()))) }
    }

    /// What the I/O thread waits for on the socket.
    var interest: SQLSocketInterest {
        var interest: SQLSocketInterest = []
        if waitingFor & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT) != 0 { interest.insert(.readable) }
        if waitingFor & MYSQL_WAIT_WRITE != 0 { interest.insert(.writable) }
        return interest.isEmpty ? .readable : interest
    }

    /// Moves to `step`, whose call has not started.
    func enter(_ step: Step) {
        self.step = step
        waitingFor = 0
        deadline = nil
    }

    /// Notes what a `_start` or `_cont` call on `mysql` returned; `true` when it waits for the
    /// socket.
    func waits(for status: Int32, on mysql: UnsafeMutablePointer<MYSQL>) -> Bool {
        waitingFor = status
        deadline =
            status & MYSQL_WAIT_TIMEOUT != 0
            ? monotonicNanoseconds() &+ UInt64(mysql_get_timeout_value_ms(mysql)) &* 1_000_000 : nil
        return status != 0
    }
}
