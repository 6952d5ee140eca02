import CLibPQ

/// Where and how a ``PostgresConnection`` connects: a libpq connection string, and the session's
/// default statement timeout.
///
/// Its `description` lists the connection string's options without the password (or any other
/// secret option), so it is safe in logs and errors.
public struct PostgresConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// A libpq connection string (`host=… dbname=…`) or URL
    /// (`postgres://user:password@host:5432/db?sslmode=require`), parsed by libpq itself, so
    /// every libpq option works: several hosts with `target_session_attrs`, `sslmode`,
    /// `connect_timeout` (10 s unless given), `application_name`…
    ///
    /// Unless the string says otherwise, TCP connections use keepalives (`keepalives_idle=30`,
    /// `keepalives_interval=10`, `keepalives_count=3`) and `tcp_user_timeout=30000`, so that a
    /// server that vanished without closing the connection is noticed within about a minute.
    public var connectionString: String
    /// The session's default `statement_timeout`: the server cancels any statement that runs
    /// longer. `nil` keeps the server's default.
    public var statementTimeout: Duration?

    /// A configuration for `connectionString`.
    public init(connectionString: String, statementTimeout: Duration? = nil) {
        self.connectionString = connectionString
        self.statementTimeout = statementTimeout
    }

    /// The connection string's options without secrets, such as
    /// `user=app dbname=app host=db.internal port=5432`.
    public var description: String {
        (try? Self.redactedDescription(of: connectionString)) ?? "(a connection string libpq cannot parse)"
    }

    /// The connection string's options, with the password (and any other secret option) left out.
    ///
    /// - Throws: ``PostgresError`` with kind ``PostgresError/Kind/connectionFailed`` and libpq's
    ///   reason when libpq cannot parse the string.
    static func redactedDescription(of connectionString: String) throws -> String {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(connectionString, &errorMessage) else {
            let message = errorMessage.map { String(cString: $0) } ?? "invalid connection string"
            PQfreemem(errorMessage)
            throw PostgresError(
                kind: .connectionFailed,
                message: message.trimmedWhitespace,
                sqlState: "08006"
            )
        }
        defer { PQconninfoFree(options) }
        var parts: [String] = []
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                let name = String(cString: keyword)
                let isSecret = option.pointee.dispchar.map { String(cString: $0) == "*" } ?? false
                if !isSecret && name != "password" {
                    parts.append("\(name)=\(String(cString: value))")
                }
            }
            option += 1
        }
        return parts.joined(separator: " ")
    }
}
