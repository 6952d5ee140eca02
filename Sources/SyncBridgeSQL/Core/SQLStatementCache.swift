/// The prepared statements one session keeps, by key, with one policy for every database: at most
/// `capacity` of them, and when a new one does not fit, the least recently used one goes.
///
/// A session looks a statement up before preparing it; after preparing, it inserts it and
/// releases what the insertion evicted (PostgreSQL deallocates it on the server, Connector/C
/// closes it, SQLite finalises it). The cache itself touches no C handle.
///
/// ```swift
/// if let cached = statements.statement(for: sql) { return cached }
/// let prepared = try prepare(sql)
/// if let evicted = statements.insert(prepared, for: sql) { finalize(evicted) }
/// ```
public struct SQLStatementCache<Key: Hashable, Statement> {
    /// The most statements kept.
    public let capacity: Int
    private var entries: [Key: (statement: Statement, lastUsed: UInt64)] = [:]
    private var clock: UInt64 = 0

    /// An empty cache that keeps at most `capacity` statements (256 by default: enough for an
    /// application's distinct statements, few enough for the server's memory).
    public init(capacity: Int = 256) {
        precondition(capacity > 0, "a statement cache holds at least one statement")
        self.capacity = capacity
    }

    /// The number of statements kept.
    public var count: Int { entries.count }

    /// The statement kept under `key`, which becomes the most recently used; `nil` when there is
    /// none.
    public mutating func statement(for key: Key) -> Statement? {
        // One lookup: the entry is touched in place.
        guard let index = entries.index(forKey: key) else { return nil }
        clock &+= 1
        entries.values[index].lastUsed = clock
        return entries.values[index].statement
    }

    /// Whether a statement is kept under `key`; unlike ``statement(for:)``, it does not count as
    /// a use.
    public func contains(_ key: Key) -> Bool {
        entries.index(forKey: key) != nil
    }

    /// Keeps `statement` under `key` as the most recently used.
    ///
    /// - Returns: The statement that had to go to make room (the least recently used one), or the
    ///   one `key` held before; the caller releases it.
    public mutating func insert(_ statement: Statement, for key: Key) -> Statement? {
        clock &+= 1
        if let replaced = entries.updateValue((statement, clock), forKey: key) { return replaced.statement }
        guard entries.count > capacity, let oldest = entries.min(by: { $0.value.lastUsed < $1.value.lastUsed }) else {
            return nil
        }
        entries[oldest.key] = nil
        return oldest.value.statement
    }

    /// Forgets the statement under `key` (the table changed shape under it, say) and returns it
    /// for the caller to release.
    public mutating func remove(_ key: Key) -> Statement? {
        entries.removeValue(forKey: key)?.statement
    }

    /// Forgets every statement and returns them for the caller to release.
    public mutating func removeAll() -> [Statement] {
        defer { entries.removeAll() }
        return entries.values.map(\.statement)
    }
}
