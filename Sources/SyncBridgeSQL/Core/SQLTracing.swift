package import Tracing

/// Where a session is connected, as OpenTelemetry's attributes name it on spans.
public struct SQLTracingTarget: Sendable, Hashable {
    /// `server.address`: the server's host name or address, or a unix socket's path.
    public var address: String?
    /// `server.port`.
    public var port: Int?
    /// `db.namespace`: the database.
    public var namespace: String?

    /// A target; unknown parts stay `nil`.
    public init(address: String? = nil, port: Int? = nil, namespace: String? = nil) {
        self.address = address
        self.port = port
        self.namespace = namespace
    }
}

/// What a span records of a failed call: the database's code and the error's type, never its
/// message (a server message can quote a value: "Duplicate entry '42' for key …").
struct SQLSpanError: Error, CustomStringConvertible {
    /// `error.type`.
    let type: String

    var description: String { type }
}

/// The spans of database calls, named and attributed as OpenTelemetry's database conventions say.
///
/// Nothing is recorded, and nothing costs more than asking for the tracer, unless a tracer is
/// bootstrapped (`InstrumentationSystem.bootstrap`) or bound to the task (`withTracer`).
package enum SQLTracing {
    /// The tracer to record with; `nil` when there is none. Without any instrument (the common
    /// case) this costs a task-local read and a type check, not a search for a tracer.
    package static var tracer: (any Tracer)? {
        if InstrumentationSystem.instrument is NoOpInstrument { return nil }
        let tracer = InstrumentationSystem.tracer
        return tracer is NoOpTracer ? nil : tracer
    }

    /// Runs `body` in a span of kind `client` for one call: a statement (named after its
    /// operation and table), or a transaction, a stream, raw access (named `name`).
    ///
    /// - Parameters:
    ///   - query: The statement, for `db.query.text` (placeholders, never values), the operation
    ///     and the table.
    ///   - name: The span's name when there is no statement, or no operation in it.
    ///   - target: Where the call runs, when already known (a pooled call learns it once it has
    ///     a connection: ``describe(_:target:)``).
    package static func withSpan<Session: SQLSession, Result>(
        _ tracer: any Tracer,
        _ session: Session.Type,
        query: SQLQuery?,
        name: String,
        target: SQLTracingTarget?,
        _ body: (any Span) async throws -> Result
    ) async throws -> Result {
        let span = startSpan(tracer, session, query: query, name: name, target: target)
        defer { span.end() }
        do {
            return try await ServiceContext.$current.withValue(span.context) { try await body(span) }
        } catch {
            record(error, Session.self, in: span)
            throw error
        }
    }

    /// Starts a call's span, to be ended by the caller (a stream's ends when its rows do).
    package static func startSpan<Session: SQLSession>(
        _ tracer: any Tracer,
        _ session: Session.Type,
        query: SQLQuery?,
        name: String,
        target: SQLTracingTarget?
    ) -> any Span {
        var attributes = SpanAttributes()
        attributes["db.system.name"] = Session.tracingSystemName
        var spanName = name
        if let query {
            let text = Session.tracingText(of: query)
            attributes["db.query.text"] = text
            if let operation = operationName(of: text) {
                attributes["db.operation.name"] = operation
                spanName = operation
                if let collection = collectionName(of: text, operation: operation) {
                    attributes["db.collection.name"] = collection
                    spanName += " \(collection)"
                }
            }
        }
        let span = tracer.startSpan(
            spanName,
            context: ServiceContext.current ?? .topLevel,
            ofKind: .client,
            at: DefaultTracerClock.now
        )
        span.attributes.merge(attributes)
        if let target { describe(span, target: target) }
        return span
    }

    /// Adds where the call runs.
    package static func describe(_ span: any Span, target: SQLTracingTarget) {
        if let address = target.address { span.attributes["server.address"] = address }
        if let port = target.port { span.attributes["server.port"] = port }
        if let namespace = target.namespace { span.attributes["db.namespace"] = namespace }
    }

    /// Records a failure: the error's code and type, never its message.
    package static func record<Session: SQLSession>(_ error: any Error, _ session: Session.Type, in span: any Span) {
        let code = Session.tracingStatusCode(of: error)
        let type = errorType(of: error, Session.self)
        if let code { span.attributes["db.response.status_code"] = code }
        span.attributes["error.type"] = type
        span.recordError(SQLSpanError(type: type))
        span.setStatus(SpanStatus(code: .error))
    }

    /// OpenTelemetry's `error.type` of a failed call: the database's code, `cancelled`, or the
    /// error's type.
    package static func errorType<Session: SQLSession>(of error: any Error, _ session: Session.Type) -> String {
        Session.tracingStatusCode(of: error)
            ?? (error is CancellationError ? "cancelled" : String(describing: Swift.type(of: error)))
    }

    /// Records the wait for a pooled connection, from `start` until now, as a child of `parent`.
    package static func recordPoolWait(
        _ tracer: any Tracer,
        parent: any Span,
        from start: DefaultTracerClock.Instant,
        pool: String
    ) {
        let wait = tracer.startSpan("wait for connection", context: parent.context, ofKind: .internal, at: start)
        wait.attributes["db.client.connection.pool.name"] = pool
        wait.end(at: DefaultTracerClock.now)
    }

    /// The statement's first keyword, upper-cased (`SELECT`, `INSERT`, `WITH`), or `nil`. Reads
    /// bytes, not characters: every statement's metrics need it.
    package static func operationName(of sql: String) -> String? {
        // At most 20 letters, upper-cased into a buffer on the stack.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { keyword -> String? in
            var count = 0
            for byte in sql.utf8 {
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
                    guard count < keyword.count else { return nil }
                    keyword[count] = byte & ~0x20
                    count += 1
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "("),
                    UInt8(ascii: ";"):
                    if count > 0 { return String(decoding: keyword[..<count], as: UTF8.self) }
                default:
                    // Not a keyword: a comment, a quoted name, a letter beyond ASCII.
                    return nil
                }
            }
            return count > 0 ? String(decoding: keyword[..<count], as: UTF8.self) : nil
        }
    }

    /// The table of a simple statement (`INSERT INTO t`, `UPDATE t`, `DELETE FROM t`,
    /// `SELECT … FROM t` with one table, `COPY t`), or `nil`.
    package static func collectionName(of sql: String, operation: String) -> String? {
        // Split at spaces only, so that a subquery's parenthesis stays on the word after FROM.
        let words = sql.split(whereSeparator: { $0.isWhitespace || $0 == ";" })
        func after(_ keyword: String) -> String? {
            guard let index = words.firstIndex(where: { $0.uppercased() == keyword }), index + 1 < words.count
            else { return nil }
            return identifier(words[index + 1])
        }
        switch operation {
        case "INSERT", "REPLACE": return after("INTO")
        case "UPDATE", "COPY": return words.count > 1 ? identifier(words[1]) : nil
        case "DELETE": return after("FROM")
        case "SELECT":
            // One table only: a join, a list of tables or a subquery names none.
            let upper = words.map { $0.uppercased() }
            guard upper.filter({ $0 == "FROM" }).count == 1, !upper.contains("JOIN"),
                let from = upper.firstIndex(of: "FROM"), from + 1 < words.count, !words[from + 1].hasSuffix(","),
                from + 2 == words.count || words[from + 2] != ","
            else { return nil }
            return identifier(words[from + 1])
        default: return nil
        }
    }

    /// A table name as written (`orders`, `shop.orders`, `"Orders"`), or `nil` for anything else
    /// (a subquery, a placeholder).
    private static func identifier(_ word: Substring) -> String? {
        // `orders(id, …)` in an INSERT: the name ends at the parenthesis.
        let word = word.prefix { $0 != "(" }
        let name = word.hasSuffix(",") ? word.dropLast() : word
        guard let first = name.first, first.isLetter || first == "_" || first == "\"" || first == "`" else {
            return nil
        }
        return String(name)
    }
}
