import CLibPQ
import SyncBridgeSQL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension PostgresSession {
    /// Runs `queries` in libpq's pipeline mode: every statement is sent without waiting for the
    /// one before, each followed by a sync point, and the results are read back in order — one
    /// round trip for the whole batch instead of one per statement.
    ///
    /// With a sync point per statement, a failure ends only its own statement (outside a
    /// transaction; inside one, the server refuses the rest of the transaction, 25P02). A statement
    /// that cannot be encoded is not sent and fails alone. Once `shouldStop` says so (the task was
    /// cancelled or the pipeline's deadline passed, and the canceller has asked the server to stop
    /// the statement it runs), the statements not yet sent are not sent, those already sent are
    /// read, and the call throws the server's cancellation error (57014), which the caller turns
    /// into `CancellationError` or the timeout.
    ///
    /// The socket is non-blocking meanwhile, so a batch of any size cannot deadlock on full socket
    /// buffers: what the server answers is read while the rest is still being sent.
    ///
    /// When `atomic`, the whole batch has one sync point, after its last statement: outside a
    /// transaction it is one implicit transaction, and the statements after a failed one are not
    /// run (their outcome is the "aborted" error, 25P02). A flush request ends each burst sent
    /// without a sync point, so the server sends its answers at once.
    ///
    /// - Returns: Each statement's outcome or error, in order.
    /// - Throws: ``PostgresError`` when the connection fails (then every statement's fate is
    ///   unknown), or the cancellation (57014) when the pipeline was stopped.
    func runPipeline(
        _ queries: [SQLQuery],
        atomic: Bool = false,
        shouldStop: () -> Bool
    ) throws -> [Result<SQLOutcome, any Error>] {
        try refuseWhileStreaming()
        var results = [Result<SQLOutcome, any Error>?](repeating: nil, count: queries.count)
        guard !queries.isEmpty else { return [] }
        // Every statement encoded first: one that cannot be fails alone and is never sent.
        var encoded = [Statement?](repeating: nil, count: queries.count)
        for index in queries.indices {
            do {
                encoded[index] = try Statement(queries[index])
            } catch {
                results[index] = .failure(error)
            }
        }
        if atomic, let failure = results.lazy.compactMap({ $0 }).first, case .failure(let error) = failure {
            // All or nothing: a statement that cannot be sent fails the batch before anything is.
            throw error
        }
        try prepareRepeatedStatements(encoded)
        guard PQenterPipelineMode(connection) == 1 else { throw connectionError(query: nil) }
        PQsetnonblocking(connection, 1)
        defer {
            cork(false)
            PQsetnonblocking(connection, 0)
            if PQpipelineStatus(connection) != PQ_PIPELINE_OFF { _ = PQexitPipelineMode(connection) }
        }
        // Statements sent and not yet read, in order, each with whether a sync point follows
        // it; what the head of it is waiting for.
        var sent: [(index: Int, synced: Bool)] = []
        var head = 0
        var reading = PipelineRead.result
        /// The head statement's rows so far, when they come one result each.
        var singleRows: [SQLRow] = []
        var next = 0
        var stopped = false
        // Each sent statement's SQL, with placeholders (never values), for its errors.
        var sql = [String](repeating: "", count: queries.count)

        while true {
            // Send what the output buffer takes (the server reads while we read its answers),
            // corked: the burst leaves in full segments when the flush below uncorks.
            var sentThisTurn = false
            if next < queries.count, !stopped, sent.count - head < Self.pipelineWindow { cork(true) }
            while next < queries.count, !stopped, sent.count - head < Self.pipelineWindow {
                if shouldStop() {
                    stopped = true
                    break
                }
                let index = next
                next += 1
                guard let statement = encoded[index] else { continue }
                sql[index] = statement.sql
                try send(statement, name: statements.statement(for: statement.key))
                let synced = !atomic || next == queries.count
                if synced {
                    guard PQpipelineSync(connection) == 1 else { throw connectionError(query: statement.sql) }
                }
                sent.append((index, synced))
                sentThisTurn = true
            }
            if atomic, let last = sent.last, !last.synced {
                if stopped {
                    // Nothing more will be sent: the batch ends after the last statement sent.
                    guard PQpipelineSync(connection) == 1 else { throw connectionError(query: nil) }
                    sent[sent.count - 1].synced = true
                } else if sentThisTurn {
                    // Without a sync point the server would hold its answers until its buffer
                    // fills, while this loop waits for them before sending more.
                    guard PQsendFlushRequest(connection) == 1 else { throw connectionError(query: nil) }
                }
            }
            cork(false)
            let flush = PQflush(connection)
            guard flush >= 0 else { throw connectionError(query: nil) }
            if head == sent.count && (next == queries.count || stopped) && flush == 0 { break }

            // Read every result that has arrived.
            guard PQconsumeInput(connection) == 1 else { throw connectionError(query: nil) }
            var progressed = false
            while head < sent.count, PQisBusy(connection) == 0 {
                let result = PQgetResult(connection)
                progressed = true
                let index = sent[head].index
                switch reading {
                case .result:
                    guard let result else { throw connectionError(query: nil) }
                    if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                        // Only after a failure before the same sync point: not with one sync each.
                        results[index] = .failure(
                            PostgresError(
                                kind: .server,
                                message: "the pipeline was aborted by an earlier failure",
                                sqlState: "25P02",
                                query: sql[index]
                            )
                        )
                    } else if PQresultStatus(result) == PGRES_SINGLE_TUPLE {
                        // A stream just before left libpq in single-row mode (libpq clears it
                        // only for a statement sent outside pipeline mode): this statement's rows
                        // come one result each, then an empty `PGRES_TUPLES_OK`.
                        singleRows.append(contentsOf: Self.rows(of: result))
                        PQclear(result)
                        continue
                    } else {
                        defer { singleRows = [] }
                        do {
                            results[index] = .success(try outcome(of: result, sql: sql[index], after: singleRows))
                        } catch {
                            results[index] = .failure(error)
                            // Lost connection: what follows can no longer be read.
                            if PQstatus(connection) != CONNECTION_OK { throw error }
                            if (error as? PostgresError)?.isQueryCanceled == true, shouldStop() { stopped = true }
                        }
                    }
                    PQclear(result)
                    reading = .endOfResult
                case .endOfResult:
                    // A statement's results end with a null result.
                    if let result {
                        PQclear(result)
                    } else if sent[head].synced {
                        reading = .sync
                    } else {
                        head += 1
                        reading = .result
                    }
                case .sync:
                    guard let result else { continue }
                    let status = PQresultStatus(result)
                    PQclear(result)
                    guard status == PGRES_PIPELINE_SYNC else { throw connectionError(query: nil) }
                    head += 1
                    reading = .result
                }
            }
            if progressed { continue }
            // Nothing to read yet: wait for the server (and for room to send, if any is left).
            var descriptor = pollfd(
                fd: PQsocket(connection),
                events: Int16(POLLIN) | (flush == 1 ? Int16(POLLOUT) : 0),
                revents: 0
            )
            guard descriptor.fd >= 0 else { throw connectionError(query: nil) }
            if poll(&descriptor, 1, -1) < 0 && errno != EINTR { throw connectionError(query: nil) }
        }
        // A cancel that reached the server just before `shouldStop` said so.
        if !stopped, shouldStop(),
            results.contains(where: { result in
                if case .failure(let error as PostgresError) = result { return error.isQueryCanceled }
                return false
            })
        {
            stopped = true
        }
        if stopped {
            throw PostgresError(
                kind: .server,
                message: "the pipeline was stopped after \(head) of \(queries.count) statements",
                sqlState: "57014",
                query: nil
            )
        }
        return results.map { $0 ?? .failure(CancellationError()) }
    }

    /// Prepares, before the pipeline starts, the statements that appear more than once in it and
    /// are not prepared yet, so that the server parses each once (one round trip per distinct
    /// statement, once per connection); a statement that appears once is sent unnamed, parsed
    /// with its execution. Only outside a transaction, where a statement that fails to prepare
    /// aborts nothing: it is then sent unnamed and fails in its own place. Behind a transaction
    /// pooler nothing is prepared.
    private func prepareRepeatedStatements(_ encoded: [Statement?]) throws {
        guard PQtransactionStatus(connection) == PQTRANS_IDLE else { return }
        var seen: [StatementKey: Int] = [:]
        for case let statement? in encoded where !statements.contains(statement.key) {
            seen[statement.key, default: 0] += 1
            guard seen[statement.key] == 2 else { continue }
            do {
                _ = try prepare(statement)
            } catch  where PQstatus(connection) == CONNECTION_OK {
                // Sent unnamed instead: the server's error comes back in the statement's place.
            }
        }
    }

    /// Statements sent ahead of the one being answered, at most: enough to cover a round trip of
    /// several milliseconds of short statements, and few enough that after a cancel or a timeout
    /// the server finishes those already sent well within the cancellation grace period.
    static let pipelineWindow = 256

    /// What the pipeline's reader expects next for the statement at its head.
    private enum PipelineRead {
        /// The statement's result (rows, a command's tag, or its error).
        case result
        /// The null result that ends the statement's results.
        case endOfResult
        /// The sync point after it.
        case sync
    }
}
