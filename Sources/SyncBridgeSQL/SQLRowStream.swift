import SyncBridge

/// Where an ``SQLBatchStream`` gets its elements: a facade's connection, reading in batches.
public protocol SQLBatchSource<Element>: Sendable {
    /// What the stream yields: rows, or chunks of `COPY` data.
    associatedtype Element: Sendable
    /// The next elements; `nil` once every one has been read. Called by one consumer at a time.
    func nextBatch() async throws -> [Element]?
    /// Called when the consumer stops early: stop the statement and free the connection. Must
    /// not block; the clean-up must be ordered before any statement submitted after this call.
    func abandon()
}

/// The rows of a statement (``SQLRowStream``), or another result read from the server in batches
/// as it is consumed, so that a result of any size runs in bounded memory: the server waits while
/// the consumer is busy.
///
/// ```swift
/// for try await row in try await client.stream("SELECT id, payload FROM events") {
///     try handle(row.decode((Int, String).self))
/// }
/// ```
///
/// Single pass: iterate it once. Dropping it early (a `break`, a thrown error, a cancelled task)
/// stops the statement on the server and returns the connection.
public struct SQLBatchStream<Element: Sendable>: AsyncSequence, Sendable {
    private let state: StreamState

    /// Wraps a batch source; `firstBatch` was already read (so that errors such as a syntax error
    /// surface where the stream is created).
    public init(source: any SQLBatchSource<Element>, firstBatch: [Element]?) {
        state = StreamState(source: source, firstBatch: firstBatch)
    }

    /// An iterator over the rows.
    public func makeAsyncIterator() -> Iterator {
        Iterator(state: state)
    }

    /// Reads every remaining element into an array: for results known to be small.
    public func collect() async throws -> [Element] {
        var elements: [Element] = []
        for try await element in self { elements.append(element) }
        return elements
    }

    /// Iterates the elements.
    public struct Iterator: AsyncIteratorProtocol {
        let state: StreamState

        /// The next element, or `nil` after the last one.
        public mutating func next() async throws -> Element? {
            try await state.next()
        }
    }

    /// Shared by the sequence and its iterator; abandons the statement when dropped unfinished.
    final class StreamState: Sendable {
        private let source: any SQLBatchSource<Element>
        private let buffer: Locked<(rows: [Element], position: Int, finished: Bool)>

        init(source: any SQLBatchSource<Element>, firstBatch: [Element]?) {
            self.source = source
            buffer = Locked((firstBatch ?? [], 0, firstBatch == nil))
        }

        func next() async throws -> Element? {
            while true {
                let (row, needsBatch) = buffer.withLock { buffer -> (Element?, Bool) in
                    if buffer.position < buffer.rows.count {
                        defer { buffer.position += 1 }
                        return (buffer.rows[buffer.position], false)
                    }
                    return (nil, !buffer.finished)
                }
                if let row { return row }
                guard needsBatch else { return nil }
                do {
                    let batch = try await source.nextBatch()
                    buffer.withLock { buffer in
                        buffer.rows = batch ?? []
                        buffer.position = 0
                        buffer.finished = batch == nil
                    }
                } catch {
                    buffer.withLock { $0 = ([], 0, true) }
                    source.abandon()
                    throw error
                }
            }
        }

        deinit {
            let finished = buffer.withLock { $0.finished }
            guard !finished else { return }
            source.abandon()
        }
    }
}

/// The rows of a statement, read in batches as they are consumed.
public typealias SQLRowStream = SQLBatchStream<SQLRow>

/// A closure that runs at most once, however many times and from however many threads it is
/// called: the "release the connection" of a stream, which several paths may reach.
package final class RunOnce: Sendable {
    private let action: Locked<(@Sendable () -> Void)?>

    package init(_ action: @escaping @Sendable () -> Void) {
        self.action = Locked(action)
    }

    /// Runs the closure the first time; does nothing after that.
    package func callAsFunction() {
        let action = self.action.withLock { action in
            defer { action = nil }
            return action
        }
        action?()
    }
}

extension SQLBatchStream {
    /// Starts a stream over a facade's connection: reads the first batch with `first` (so that
    /// errors such as a syntax error surface here), later ones with `next`. `abandon` stops what
    /// is left on the connection's thread, without waiting, and then runs the closure it is
    /// given. `onFinish` runs exactly once: when the elements are exhausted, when reading fails,
    /// or after `abandon` (a pool releases its lease there).
    package static func start(
        first: () async throws -> [Element]?,
        next: @escaping @Sendable () async throws -> [Element]?,
        abandon: @escaping @Sendable (_ then: @escaping @Sendable () -> Void) -> Void,
        onFinish: @escaping @Sendable () -> Void
    ) async throws -> SQLBatchStream {
        let source = ConnectionBatchSource(next: next, abandon: abandon, onFinish: onFinish)
        let batch: [Element]?
        do {
            batch = try await first()
        } catch {
            source.abandon()
            throw error
        }
        if batch == nil { source.finish() }
        return SQLBatchStream(source: source, firstBatch: batch)
    }
}

/// The batch source of ``SQLBatchStream/start(first:next:abandon:onFinish:)``.
private final class ConnectionBatchSource<Element: Sendable>: SQLBatchSource {
    private let next: @Sendable () async throws -> [Element]?
    private let stop: @Sendable (_ then: @escaping @Sendable () -> Void) -> Void
    let finish: RunOnce

    init(
        next: @escaping @Sendable () async throws -> [Element]?,
        abandon: @escaping @Sendable (_ then: @escaping @Sendable () -> Void) -> Void,
        onFinish: @escaping @Sendable () -> Void
    ) {
        self.next = next
        self.stop = abandon
        self.finish = RunOnce(onFinish)
    }

    func nextBatch() async throws -> [Element]? {
        let batch = try await next()
        if batch == nil { finish() }
        return batch
    }

    func abandon() {
        stop { [finish] in finish() }
    }
}
