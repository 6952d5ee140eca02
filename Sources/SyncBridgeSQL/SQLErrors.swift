/// A value could not be decoded into the requested Swift type: NULL into a non-optional, text into
/// an integer, a number that does not fit, invalid UTF-8, a malformed value.
public struct SQLDecodingError: Error, Hashable, CustomStringConvertible {
    /// The column the value came from.
    public let column: SQLColumn
    /// The Swift type that was asked for.
    public let swiftType: String
    /// What was wrong.
    public let reason: String

    /// Creates a decoding error.
    public init<T>(column: SQLColumn, swiftType: T.Type, reason: String) {
        self.column = column
        self.swiftType = String(reflecting: swiftType)
        self.reason = reason
    }

    /// Names the column, the database type, the Swift type and the reason.
    public var description: String {
        "cannot decode column \(column) as \(swiftType): \(reason)"
    }
}

/// A Swift value could not be sent as a parameter: a text with a NUL byte (which SQL text cannot
/// hold), a value the database cannot represent.
public struct SQLEncodingError: Error, Hashable, CustomStringConvertible {
    /// The parameter's position in the query, from 1.
    public let parameter: Int
    /// What was wrong.
    public let reason: String
    /// For a statement run with many rows of values (MariaDB's `executeMany`), the row's index
    /// in them, from 0; `nil` otherwise.
    public let row: Int?

    /// Creates an encoding error.
    public init(parameter: Int, reason: String, row: Int? = nil) {
        self.parameter = parameter
        self.reason = reason
        self.row = row
    }

    /// Names the parameter (and row) and the reason.
    public var description: String {
        "cannot send parameter \(parameter)\(row.map { " of row \($0)" } ?? ""): \(reason)"
    }
}

/// What both facades' server errors have in common, so that generic code (retry helpers,
/// logging) can tell a deadlock from a constraint violation without knowing the database.
public protocol SQLServerError: Error, Sendable {
    /// The five-character SQLSTATE code, such as `23505` or `40P01`.
    var sqlState: String { get }
    /// The server's message, in its own words.
    var serverMessage: String { get }
    /// A unique or primary-key constraint rejected the row.
    var isUniqueViolation: Bool { get }
    /// The server chose this transaction as a deadlock victim: retrying the whole transaction may
    /// succeed.
    var isDeadlock: Bool { get }
    /// A serialization failure or a lock wait timeout: retrying the whole transaction may succeed.
    var isTransient: Bool { get }
}
