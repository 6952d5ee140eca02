/// A SQL statement whose interpolated values are **bound parameters**, never spliced into the
/// text: `"SELECT * FROM users WHERE id = \(id)"` sends `SELECT * FROM users WHERE id = $1`
/// (PostgreSQL) or `… id = ?` (MariaDB) with `id` alongside. Injection strings stay data.
///
/// ```swift
/// let rows = try await db.query("SELECT name FROM users WHERE email = \(email) AND active = \(true)")
/// ```
///
/// Text that must become SQL (an identifier chosen by your code, never by a user) goes through the
/// explicitly unsafe ``init(unsafeSQL:)`` or `\(unsafeSQL: …)`.
public struct SQLQuery: Sendable, Hashable, ExpressibleByStringInterpolation, CustomStringConvertible {
    /// One part of the statement.
    public enum Segment: Sendable, Hashable {
        /// SQL text, sent as written.
        case sql(String)
        /// A placeholder for `bindings[index]`.
        case parameter(index: Int)
    }

    /// The statement's parts in order.
    public private(set) var segments: [Segment]
    /// The bound values, in placeholder order.
    public private(set) var bindings: [SQLValue]

    /// A statement with no parameters, from a literal.
    public init(stringLiteral value: String) {
        segments = value.isEmpty ? [] : [.sql(value)]
        bindings = []
    }

    /// Builds the statement from an interpolation.
    public init(stringInterpolation: StringInterpolation) {
        segments = stringInterpolation.segments
        bindings = stringInterpolation.bindings
    }

    /// A statement from text built at run time. **Unsafe**: nothing in `unsafeSQL` is escaped, so
    /// it must never contain input from users; interpolate values instead.
    public init(unsafeSQL: String) {
        self.init(stringLiteral: unsafeSQL)
    }

    /// Appends another query, renumbering its parameters.
    public mutating func append(_ other: SQLQuery) {
        let offset = bindings.count
        for segment in other.segments {
            switch segment {
            case .sql(let text): segments.append(.sql(text))
            case .parameter(let index): segments.append(.parameter(index: index + offset))
            }
        }
        bindings.append(contentsOf: other.bindings)
    }

    /// Renders the statement with `placeholder(n)` for the n-th parameter (from 1):
    /// `{ "$\($0)" }` for PostgreSQL, `{ _ in "?" }` for MariaDB.
    public func render(placeholder: (Int) -> String) -> String {
        var text = ""
        for segment in segments {
            switch segment {
            case .sql(let sql): text += sql
            case .parameter(let index): text += placeholder(index + 1)
            }
        }
        return text
    }

    /// The statement with `$n` placeholders. Parameter values are not shown, so logging it never
    /// leaks the data it carries.
    public var description: String {
        render { "$\($0)" }
    }

    /// Collects literal text and bound values.
    public struct StringInterpolation: StringInterpolationProtocol {
        var segments: [Segment] = []
        var bindings: [SQLValue] = []

        /// Reserves room for the parts.
        public init(literalCapacity: Int, interpolationCount: Int) {
            segments.reserveCapacity(interpolationCount * 2 + 1)
            bindings.reserveCapacity(interpolationCount)
        }

        /// Appends SQL text.
        public mutating func appendLiteral(_ literal: String) {
            guard !literal.isEmpty else { return }
            if case .sql(let previous) = segments.last {
                segments[segments.count - 1] = .sql(previous + literal)
            } else {
                segments.append(.sql(literal))
            }
        }

        /// Appends a value as a bound parameter.
        public mutating func appendInterpolation<Value: SQLEncodable>(_ value: Value) {
            segments.append(.parameter(index: bindings.count))
            bindings.append(value.sqlValue)
        }

        /// Appends a value, or `NULL` for `nil`, as a bound parameter.
        public mutating func appendInterpolation<Value: SQLEncodable>(_ value: Value?) {
            segments.append(.parameter(index: bindings.count))
            bindings.append(value?.sqlValue ?? .null)
        }

        /// Appends a prepared ``SQLQuery`` (its parameters stay parameters).
        public mutating func appendInterpolation(_ query: SQLQuery) {
            var combined = SQLQuery(segments: segments, bindings: bindings)
            combined.append(query)
            segments = combined.segments
            bindings = combined.bindings
        }

        /// Appends text as SQL. **Unsafe**: nothing is escaped; never pass user input.
        public mutating func appendInterpolation(unsafeSQL text: String) {
            appendLiteral(text)
        }
    }

    private init(segments: [Segment], bindings: [SQLValue]) {
        self.segments = segments
        self.bindings = bindings
    }
}

extension SQLQuery {
    /// The statement's first keyword, upper-cased (`SELECT`, `INSERT`, `WITH`), or `nil`: the
    /// operation that metrics and spans name.
    package var leadingKeyword: String? {
        guard case .sql(let text) = segments.first else { return nil }
        return SQLTracing.operationName(of: text)
    }
}
