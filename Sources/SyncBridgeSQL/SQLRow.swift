/// The columns of a result, shared by all its rows.
public final class SQLColumns: Sendable, CustomStringConvertible {
    /// The columns in order.
    public let all: [SQLColumn]
    /// The database's numeric type code of each column (PostgreSQL's type OIDs, MariaDB's field
    /// types), for the facade that reads the values.
    public let typeCodes: [UInt32]
    /// The first column of each name, for results wider than ``linearSearchLimit`` (a narrower
    /// one is searched in order: as fast, and no dictionary built for every result).
    private let indexByName: [String: Int]?

    /// The widest result whose columns are found by name in order, without a dictionary.
    static let linearSearchLimit = 16

    /// Describes the columns of a result.
    public init(_ columns: [SQLColumn], typeCodes: [UInt32] = []) {
        all = columns
        self.typeCodes = typeCodes
        guard columns.count > Self.linearSearchLimit else {
            indexByName = nil
            return
        }
        var indexByName: [String: Int] = [:]
        for column in columns where indexByName[column.name] == nil {
            indexByName[column.name] = column.index
        }
        self.indexByName = indexByName
    }

    /// The index of the first column called `name`.
    public func index(named name: String) -> Int? {
        guard let indexByName else { return all.first { $0.name == name }?.index }
        return indexByName[name]
    }

    /// The column names.
    public var description: String { all.map(\.name).joined(separator: ", ") }
}

/// A row or column was asked for that the result does not have.
public struct SQLRowAccessError: Error, Hashable, CustomStringConvertible {
    /// What was asked for and what exists.
    public let description: String
}

/// One result row: its values, and its columns' names and database types.
///
/// ```swift
/// let id = try row.decode(Int.self, at: 0)
/// let name = try row.decode(String?.self, named: "name")
/// let (id2, name2) = try row.decode((Int, String?).self)
/// ```
///
/// The rows of one result share one buffer of values (one allocation per result, not one per
/// row): a row kept alive keeps its result's values alive with it.
public struct SQLRow: Sendable, RandomAccessCollection, CustomStringConvertible {
    /// The result this row belongs to: its columns and every row's values, one reference to
    /// count per row (a row made and dropped costs one retain and one release, not two).
    private let result: SQLResultValues
    /// Where this row's values begin in the result's values.
    private let start: Int
    /// The number of columns.
    public let endIndex: Int

    /// Creates a row. `values.count` must equal the number of columns.
    public init(columns: SQLColumns, values: [SQLValue]) {
        precondition(columns.all.count == values.count, "a row needs one value per column")
        self.init(result: SQLResultValues(columns: columns, values: values), start: 0, width: values.count)
    }

    private init(result: SQLResultValues, start: Int, width: Int) {
        self.result = result
        self.start = start
        self.endIndex = width
    }

    /// The rows of a result whose values are `values`, row after row: `rowCount` rows of
    /// `columns.all.count` values each, sharing `values`' buffer.
    package static func rows(columns: SQLColumns, values: [SQLValue], rowCount: Int) -> [SQLRow] {
        let width = columns.all.count
        precondition(values.count == rowCount * width, "a result needs one value per column of each row")
        let result = SQLResultValues(columns: columns, values: values)
        return [SQLRow](unsafeUninitializedCapacity: rowCount) { buffer, initialized in
            for row in 0..<rowCount {
                buffer.initializeElement(at: row, to: SQLRow(result: result, start: row * width, width: width))
            }
            initialized = rowCount
        }
    }

    /// The result's columns.
    public var columns: SQLColumns { result.columns }

    /// The values, one per column.
    public var values: [SQLValue] {
        result.values.count == endIndex ? result.values : Array(result.values[start..<start + endIndex])
    }

    /// The first column's index: 0.
    public var startIndex: Int { 0 }
    /// The raw value of column `index`.
    public subscript(index: Int) -> SQLValue {
        precondition(index >= 0 && index < endIndex, "no column \(index): the row has \(endIndex)")
        return result.values[start + index]
    }

    /// Decodes column `index` as `T`.
    /// - Throws: ``SQLDecodingError`` naming the column, its database type and `T`;
    ///   ``SQLRowAccessError`` when there is no such column.
    public func decode<T: SQLDecodable>(_ type: T.Type = T.self, at index: Int) throws -> T {
        guard index >= 0 && index < endIndex else {
            throw SQLRowAccessError(description: "no column \(index): the row has \(endIndex) (\(columns))")
        }
        return try T.decode(from: result.values[start + index], column: result.columns.all[index])
    }

    /// Decodes the first column called `name` as `T`.
    /// - Throws: ``SQLDecodingError``; ``SQLRowAccessError`` when there is no such column.
    public func decode<T: SQLDecodable>(_ type: T.Type = T.self, named name: String) throws -> T {
        guard let index = columns.index(named: name) else {
            throw SQLRowAccessError(description: "no column named \"\(name)\"; the columns are \(columns)")
        }
        return try decode(T.self, at: index)
    }

    /// Decodes the whole row into a tuple, one element per column, in order.
    /// - Throws: ``SQLRowAccessError`` when the tuple and the row differ in length;
    ///   ``SQLDecodingError`` for the first column that does not decode.
    public func decode<each T: SQLDecodable>(_ types: (repeat each T).Type) throws -> (repeat each T) {
        var count = 0
        for _ in repeat (each T).self { count += 1 }
        guard count == endIndex else {
            throw SQLRowAccessError(
                description: "cannot decode \(endIndex) columns (\(columns)) into a tuple of \(count)"
            )
        }
        var index = 0
        func next<U: SQLDecodable>(_ type: U.Type) throws -> U {
            defer { index += 1 }
            return try decode(U.self, at: index)
        }
        return (repeat try next((each T).self))
    }

    /// `(name: value, …)` — beware: this shows the data.
    public var description: String {
        "(" + zip(columns.all, self).map { "\($0.name): \($1)" }.joined(separator: ", ") + ")"
    }
}

/// A result's columns and the values of all its rows, row after row, shared by its rows.
private final class SQLResultValues: Sendable {
    let columns: SQLColumns
    let values: [SQLValue]

    init(columns: SQLColumns, values: [SQLValue]) {
        self.columns = columns
        self.values = values
    }
}
