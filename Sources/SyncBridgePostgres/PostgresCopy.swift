import CLibPQ
import SyncBridge
public import SyncBridgeSQL
import Tracing

extension PostgresConnection {
    /// Bulk-loads data with `COPY … FROM STDIN`, streaming it from `data` chunk by chunk (for
    /// rows already in memory, ``copyFrom(_:rows:)`` is simpler).
    ///
    /// - Parameters:
    ///   - statement: A `COPY … FROM STDIN` statement (COPY takes no parameters; name tables with
    ///     `\(unsafeSQL:)` from trusted values only).
    ///   - data: The data in the statement's format (text format by default: one line per row,
    ///     see ``PostgresCopy/textRow(_:)``). Chunks need not align with rows.
    /// - Returns: The number of rows loaded.
    /// - Throws: ``PostgresError`` when the server rejects the data (nothing is loaded then); the
    ///   error `data` throws (the `COPY` is aborted first); `CancellationError` (aborted too).
    @discardableResult
    public func copyFrom<Data: AsyncSequence>(_ statement: SQLQuery, data: Data) async throws -> Int
    where Data.Element == [UInt8] {
        guard let tracer = SQLTracing.tracer else { return try await copyFromUntraced(statement, data: data) }
        return try await SQLTracing.withSpan(
            tracer,
            PostgresSession.self,
            query: statement,
            name: PostgresSession.tracingSystemName,
            target: tracingTarget
        ) { _ in try await copyFromUntraced(statement, data: data) }
    }

    private func copyFromUntraced<Data: AsyncSequence>(_ statement: SQLQuery, data: Data) async throws -> Int
    where Data.Element == [UInt8] {
        let sql = try Self.copySQL(statement)
        try await withSession { session in try session.beginCopy(sql, direction: PGRES_COPY_IN) }
        do {
            for try await chunk in data {
                try Task.checkCancellation()
                guard !chunk.isEmpty else { continue }
                try await withSession { session in try session.putCopyData(chunk) }
            }
        } catch {
            let reason = error is CancellationError ? "cancelled by the client" : "the client's data failed: \(error)"
            _ = try? await withSessionIgnoringCancellation { session in try session.endCopyIn(errorMessage: reason) }
            throw error
        }
        return try await withSessionIgnoringCancellation { session in try session.endCopyIn(errorMessage: nil) }
    }

    /// Bulk-loads rows with `COPY … FROM STDIN` in text format, sent in chunks of about 64 KB.
    ///
    /// ```swift
    /// let count = try await connection.copyFrom(
    ///     "COPY products (id, name) FROM STDIN",
    ///     rows: products.map { [.int($0.id), .text($0.name)] }
    /// )
    /// ```
    ///
    /// - Parameters:
    ///   - statement: A `COPY … FROM STDIN` statement in text format whose columns match the rows.
    ///   - rows: The rows' values, in column order.
    /// - Returns: The number of rows loaded.
    /// - Throws: As ``copyFrom(_:data:)``; ``SQLEncodingError`` for a value COPY cannot carry.
    @discardableResult
    public func copyFrom(_ statement: SQLQuery, rows: some Sequence<[SQLValue]>) async throws -> Int {
        try await copyFrom(statement, data: CopyRowChunks(rows: rows))
    }

    /// Exports data with `COPY … TO STDOUT`, streamed in batches as it is consumed; each element
    /// is one row in the statement's format.
    ///
    /// ```swift
    /// for try await line in try await connection.copyTo("COPY products TO STDOUT") { … }
    /// ```
    ///
    /// - Parameters:
    ///   - statement: A `COPY … TO STDOUT` statement.
    ///   - maximumBatchBytes: Roughly how much is read per trip to the connection's thread.
    /// - Returns: The rows; dropping the sequence early cancels the `COPY` on the server.
    public func copyTo(_ statement: SQLQuery, maximumBatchBytes: Int = 1 << 20) async throws -> SQLBatchStream<[UInt8]>
    {
        try await copyTo(statement, maximumBatchBytes: maximumBatchBytes, onFinish: {})
    }

    /// `copyTo`; `onFinish` runs exactly once, when the data is exhausted, fails or is abandoned.
    func copyTo(
        _ statement: SQLQuery,
        maximumBatchBytes: Int,
        onFinish: @escaping @Sendable () -> Void
    ) async throws -> SQLBatchStream<[UInt8]> {
        let span = SQLTracing.tracer.map { tracer in
            SQLTracing.startSpan(
                tracer,
                PostgresSession.self,
                query: statement,
                name: PostgresSession.tracingSystemName,
                target: tracingTarget
            )
        }
        let next: @Sendable () async throws -> [[UInt8]]? = { [self] in
            do {
                // Each trip to the thread runs in the COPY's span, whoever asks for the next rows.
                return try await ServiceContext.$current.withValue(span?.context ?? ServiceContext.current) {
                    try await withSession { session in try session.nextCopyRows(maximumBytes: maximumBatchBytes) }
                }
            } catch {
                if let span { SQLTracing.record(error, PostgresSession.self, in: span) }
                throw error
            }
        }
        return try await ServiceContext.$current.withValue(span?.context ?? ServiceContext.current) {
            try await .start(
                first: {
                    // Inside `first`, so that a statement refused here still runs `onFinish`.
                    do {
                        let sql = try Self.copySQL(statement)
                        try await withSession { session in try session.beginCopy(sql, direction: PGRES_COPY_OUT) }
                    } catch {
                        if let span { SQLTracing.record(error, PostgresSession.self, in: span) }
                        throw error
                    }
                    return try await next()
                },
                next: next,
                abandon: { [self] done in abandonCopy(then: done) },
                onFinish: {
                    span?.end()
                    onFinish()
                }
            )
        }
    }

    static func copySQL(_ statement: SQLQuery) throws -> String {
        guard statement.bindings.isEmpty else {
            throw SQLEncodingError(
                parameter: 1,
                reason: "COPY takes no parameters; load values as COPY data instead"
            )
        }
        return statement.render { "$\($0)" }
    }
}

/// Helpers for COPY's text format.
public enum PostgresCopy {
    /// One row in COPY's text format: values separated by tabs, `\N` for NULL, backslash escapes
    /// for tabs, newlines and backslashes, and a final newline.
    public static func textRow(_ values: [SQLValue]) throws -> [UInt8] {
        var line: [UInt8] = []
        for (index, value) in values.enumerated() {
            if index > 0 { line.append(UInt8(ascii: "\t")) }
            guard case .null = value else {
                let parameter = try PostgresTextFormat.parameter(value, index: index + 1)
                let text: [UInt8]
                if parameter.format == 1 {  // bytes: COPY's text format wants bytea's hex text
                    text = Array(
                        ("\\x"
                            + (parameter.bytes ?? []).map { byte in
                                let digits = Array("0123456789abcdef")
                                return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
                            }.joined()).utf8
                    )
                } else {
                    text = parameter.bytes ?? []
                }
                for byte in text {
                    switch byte {
                    case UInt8(ascii: "\\"): line += Array("\\\\".utf8)
                    case UInt8(ascii: "\t"): line += Array("\\t".utf8)
                    case UInt8(ascii: "\n"): line += Array("\\n".utf8)
                    case UInt8(ascii: "\r"): line += Array("\\r".utf8)
                    default: line.append(byte)
                    }
                }
                continue
            }
            line += Array("\\N".utf8)
        }
        line.append(UInt8(ascii: "\n"))
        return line
    }
}

/// Rows encoded into `COPY` text lazily, about 64 KB per chunk as the copy consumes them: memory
/// stays bounded and no single step keeps the caller's thread for long, whatever the row count.
struct CopyRowChunks<Rows: Sequence<[SQLValue]>>: AsyncSequence {
    typealias Element = [UInt8]
    let rows: Rows

    struct AsyncIterator: AsyncIteratorProtocol {
        var rows: Rows.Iterator
        var finished = false

        mutating func next() async throws -> [UInt8]? {
            guard !finished else { return nil }
            var chunk: [UInt8] = []
            while chunk.count < 64 * 1024 {
                guard let row = rows.next() else {
                    finished = true
                    break
                }
                chunk += try PostgresCopy.textRow(row)
            }
            return chunk.isEmpty ? nil : chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(rows: rows.makeIterator()) }
}
