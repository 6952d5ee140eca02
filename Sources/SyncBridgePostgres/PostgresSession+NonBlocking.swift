import CLibPQ
import SyncBridge
public import SyncBridgeSQL

extension PostgresSession: SQLNonBlockingSession {
    /// libpq's socket (`PQsocket`).
    public var ioSocket: Int32 { PQsocket(connection) }

    /// Sends `query` with libpq's asynchronous API (`PQsendPrepare` the first time a statement
    /// is seen, then `PQsendQueryPrepared`), without waiting for the server.
    public func startStatement(_ query: SQLQuery) throws -> SQLStatementProgress {
        try refuseWhileStreaming()
        let statement = try Statement(query)
        var steps: [NonBlockingStep] = []
        if usesNamedStatements {
            if let name = statements.statement(for: statement.key) {
                steps.append(.execute(name))
            } else {
                let name = "sb_\(nextStatementNumber)"
                nextStatementNumber += 1
                steps += [.prepare(name), .execute(name)]
            }
        } else {
            steps.append(.execute(nil))
        }
        nonBlocking = NonBlockingStatement(statement: statement, steps: steps[...])
        PQsetnonblocking(connection, 1)
        do {
            try sendStep()
            let flushed = PQflush(connection)
            guard flushed >= 0 else { throw connectionError(query: statement.sql) }
            return .waiting(flushed == 1 ? [.readable, .writable] : .readable)
        } catch {
            endNonBlocking()
            throw error
        }
    }

    /// Reads what the server sent (`PQconsumeInput`, `PQisBusy`, `PQgetResult`) and sends what
    /// is left to send (`PQflush`).
    public func continueStatement() throws -> SQLStatementProgress {
        do {
            while true {
                guard let current = nonBlocking else {
                    throw PostgresError(
                        kind: .protocolViolation,
                        message: "no statement is running",
                        sqlState: "XX000"
                    )
                }
                guard PQconsumeInput(connection) == 1 else { throw connectionError(query: current.statement.sql) }
                let flushed = PQflush(connection)
                guard flushed >= 0 else { throw connectionError(query: current.statement.sql) }
                var stepEnded = false
                while PQisBusy(connection) == 0 {
                    guard let result = PQgetResult(connection) else {
                        stepEnded = true
                        break
                    }
                    record(result)
                    PQclear(result)
                }
                if !stepEnded {
                    return .waiting(flushed == 1 ? [.readable, .writable] : .readable)
                }
                if let outcome = try endStep() { return .done(outcome) }
            }
        } catch {
            endNonBlocking()
            throw error
        }
    }

    /// Sends the current step's command.
    private func sendStep() throws {
        guard let current = nonBlocking, let step = current.steps.first else { return }
        let statement = current.statement
        switch step {
        case .prepare(let name):
            let sent = statement.types.withUnsafeBufferPointer { types in
                PQsendPrepare(connection, name, statement.sql, Int32(types.count), types.baseAddress)
            }
            guard sent == 1 else { throw connectionError(query: statement.sql) }
        case .execute(let name):
            try send(statement, name: name)
        case .deallocate(let name):
            guard PQsendQuery(connection, "DEALLOCATE \(name)") == 1 else { throw connectionError(query: nil) }
        }
    }

    /// Keeps what a result of the current step says: the first error, else the last outcome.
    private func record(_ result: OpaquePointer) {
        guard var current = nonBlocking, let step = current.steps.first else { return }
        defer { nonBlocking = current }
        if case .deallocate = step { return }
        if case .failure = current.result { return }
        do {
            current.result = .success(try outcome(of: result, sql: current.statement.sql))
        } catch {
            current.result = .failure(error)
        }
    }

    /// The current step has all its results: moves to the next one, or ends the statement.
    ///
    /// - Returns: The statement's outcome once every step ran; `nil` while a next step was sent.
    /// - Throws: The statement's error, once every step ran.
    private func endStep() throws -> SQLOutcome? {
        guard var current = nonBlocking, let step = current.steps.popFirst() else { return nil }
        let result = current.result
        switch step {
        case .prepare(let name):
            if case .failure = result {
                // Not prepared: the execution is not sent.
                current.steps.removeAll()
            } else {
                current.result = nil
                if let evicted = statements.insert(name, for: current.statement.key), !isBehindTransactionPooler {
                    current.steps.append(.deallocate(evicted))
                }
            }
        case .execute:
            current.outcome = result
            if case .failure(let error as PostgresError) = result, error.sqlState == "0A000",
                error.message.contains("cached plan"), let stale = statements.remove(current.statement.key),
                !isBehindTransactionPooler
            {
                // The table changed shape under the prepared statement: the next call prepares
                // it anew.
                current.steps.append(.deallocate(stale))
            }
        case .deallocate:
            // Best effort, as in the blocking path.
            break
        }
        nonBlocking = current
        if !current.steps.isEmpty {
            try sendStep()
            return nil
        }
        endNonBlocking()
        switch current.outcome ?? result {
        case .success(let outcome): return outcome
        case .failure(let error): throw error
        case nil: throw connectionError(query: current.statement.sql)
        }
    }

    /// Leaves the session ready for blocking calls.
    private func endNonBlocking() {
        nonBlocking = nil
        PQsetnonblocking(connection, 0)
        if !isHealthy { isBroken = true }
    }
}

/// A statement that an I/O thread runs with libpq's asynchronous API, one command at a time.
struct NonBlockingStatement {
    let statement: PostgresSession.Statement
    /// The commands left, the current one first.
    var steps: ArraySlice<NonBlockingStep>
    /// What the current command's results said so far.
    var result: Result<SQLOutcome, any Error>?
    /// What the execution said.
    var outcome: Result<SQLOutcome, any Error>?
}

/// One command of a ``NonBlockingStatement``.
enum NonBlockingStep {
    /// Prepares the statement under this name (its first use on the connection).
    case prepare(String)
    /// Executes it, prepared under this name, or unnamed.
    case execute(String?)
    /// Frees a prepared statement the cache let go.
    case deallocate(String)
}
