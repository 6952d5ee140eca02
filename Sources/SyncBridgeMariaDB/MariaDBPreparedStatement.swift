import CMariaDB
import FoundationEssentials
import SyncBridgeSQL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A prepared statement and the buffers its rows are read into.
final class MariaDBPreparedStatement {
    let handle: UnsafeMutablePointer<MYSQL_STMT>
    let sql: String
    let parameterCount: Int

    /// The current result's columns; `nil` for statements without rows.
    private(set) var columns: SQLColumns?
    private var fields: [FieldShape] = []
    private var binds: UnsafeMutablePointer<MYSQL_BIND>?
    private var buffers: [UnsafeMutableRawPointer] = []
    private var capacities: [Int] = []
    private var lengths: UnsafeMutablePointer<UInt>?
    private var nulls: UnsafeMutablePointer<my_bool>?
    private var truncations: UnsafeMutablePointer<my_bool>?

    /// What decides how a column is read: Connector/C's type, flags and character set, and the
    /// column's name.
    private struct FieldShape {
        let type: enum_field_types
        let flags: UInt32
        let charset: UInt32
        let nameBytes: [UInt8]
        /// How the column is read, decided once per result shape rather than per value.
        let category: MariaDBColumnCategory
        var name: String { String(decoding: nameBytes, as: UTF8.self) }

        init(_ field: MYSQL_FIELD) {
            type = field.type
            flags = field.flags
            charset = field.charsetnr
            category = MariaDBColumnCategory(type: field.type, flags: field.flags, charset: field.charsetnr)
            nameBytes =
                field.name.map { name in
                    Array(UnsafeRawBufferPointer(start: name, count: Int(field.name_length)))
                } ?? []
        }

        /// Whether `field` describes the same column, compared without allocating.
        func matches(_ field: MYSQL_FIELD) -> Bool {
            guard field.type == type, field.flags == flags, field.charsetnr == charset,
                Int(field.name_length) == nameBytes.count
            else { return false }
            guard !nameBytes.isEmpty else { return true }
            guard let name = field.name else { return false }
            return nameBytes.withUnsafeBytes { memcmp($0.baseAddress!, name, nameBytes.count) == 0 }
        }
    }

    init(handle: UnsafeMutablePointer<MYSQL_STMT>, sql: String) {
        self.handle = handle
        self.sql = sql
        self.parameterCount = Int(mysql_stmt_param_count(handle))
    }

    func close() {
        releaseBuffers()
        mysql_stmt_close(handle)
    }

    /// Reads and drops whatever is left of the current result.
    func discardResults() {
        mysql_stmt_free_result(handle)
        mysql_stmt_reset(handle)
    }

    private func releaseBuffers() {
        for buffer in buffers { buffer.deallocate() }
        buffers = []
        capacities = []
        binds?.deallocate()
        lengths?.deallocate()
        nulls?.deallocate()
        truncations?.deallocate()
        binds = nil
        lengths = nil
        nulls = nil
        truncations = nil
    }

    /// Reads the executed statement's result columns and binds buffers for them; reuses the
    /// previous columns and buffers when the shape has not changed (the usual case, checked
    /// without allocating).
    func readMetadata(session: MariaDBSession) throws {
        // The connection holds the metadata the server sent with this execution; the
        // statement's own copy keeps the column names from when it was prepared.
        let count = Int(handle.pointee.field_count)
        guard count > 0 else {
            columns = nil
            return
        }
        let current = Int(session.mysql.pointee.field_count) == count ? session.mysql.pointee.fields : nil
        guard let fieldArray = current ?? handle.pointee.fields else { throw session.statementError(self) }
        if count == fields.count, columns != nil, binds != nil,
            (0..<count).allSatisfy({ fields[$0].matches(fieldArray[$0]) })
        {
            // Same buffers; binding them again is a few stores per column and does not rely on
            // what Connector/C keeps across a reset (an abandoned or failed result).
            guard mysql_stmt_bind_result(handle, binds) == 0 else { throw session.statementError(self) }
            return
        }
        var shapes: [FieldShape] = []
        shapes.reserveCapacity(count)
        for index in 0..<count {
            shapes.append(FieldShape(fieldArray[index]))
        }
        releaseBuffers()
        fields = shapes
        columns = SQLColumns(
            shapes.enumerated().map { index, shape in
                SQLColumn(
                    index: index,
                    name: shape.name,
                    databaseType: shape.category.typeName(type: shape.type, flags: shape.flags)
                )
            },
            typeCodes: shapes.map { UInt32($0.type.rawValue) }
        )
        let binds = UnsafeMutablePointer<MYSQL_BIND>.allocate(capacity: count)
        binds.initialize(repeating: MYSQL_BIND(), count: count)
        let lengths = UnsafeMutablePointer<UInt>.allocate(capacity: count)
        lengths.initialize(repeating: 0, count: count)
        let nulls = UnsafeMutablePointer<my_bool>.allocate(capacity: count)
        nulls.initialize(repeating: 0, count: count)
        let truncations = UnsafeMutablePointer<my_bool>.allocate(capacity: count)
        truncations.initialize(repeating: 0, count: count)
        for (index, shape) in shapes.enumerated() {
            let category = shape.category
            let capacity = category.initialCapacity
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
            buffers.append(buffer)
            capacities.append(capacity)
            binds[index].buffer_type = category.bufferType
            binds[index].buffer = buffer
            binds[index].buffer_length = UInt(capacity)
            binds[index].length = lengths + index
            binds[index].is_null = nulls + index
            binds[index].error = truncations + index
            binds[index].is_unsigned = category == .unsigned ? 1 : 0
        }
        self.binds = binds
        self.lengths = lengths
        self.nulls = nulls
        self.truncations = truncations
        guard mysql_stmt_bind_result(handle, binds) == 0 else { throw session.statementError(self) }
    }

    /// Fetches the next row of the current result and appends its values to `values` (a
    /// result's rows share one buffer); `false` at its end.
    func fetchRow(into values: inout [SQLValue], session: MariaDBSession) throws -> Bool {
        guard let binds, let lengths, let nulls else { return false }
        let status = mysql_stmt_fetch(handle)
        switch status {
        case 0, MYSQL_DATA_TRUNCATED:
            break
        case MYSQL_NO_DATA:
            return false
        default:
            throw session.statementError(self)
        }
        for index in fields.indices {
            if nulls[index] != 0 {
                values.append(.null)
                continue
            }
            let length = Int(lengths[index])
            let category = fields[index].category
            if category.isVariableLength && length > capacities[index] {
                try grow(column: index, to: length, binds: binds, session: session)
            }
            values.append(
                category.value(in: UnsafeRawBufferPointer(start: buffers[index], count: length), buffer: buffers[index])
            )
        }
        return true
    }

    /// Reads a column that did not fit its buffer into a larger one, which later rows then use.
    private func grow(
        column index: Int,
        to length: Int,
        binds: UnsafeMutablePointer<MYSQL_BIND>,
        session: MariaDBSession
    ) throws {
        let capacity = max(length, capacities[index] * 2)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        buffers[index].deallocate()
        buffers[index] = buffer
        capacities[index] = capacity
        binds[index].buffer = buffer
        binds[index].buffer_length = UInt(capacity)
        guard mysql_stmt_fetch_column(handle, binds + index, UInt32(index), 0) == 0 else {
            throw session.statementError(self)
        }
        // Later rows land in the new buffer.
        guard mysql_stmt_bind_result(handle, binds) == 0 else { throw session.statementError(self) }
    }
}
