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
    /// longer. `nil` keeps the server's default. Behind a transaction pooler it cannot be a session
    /// setting: each `query` and `execute` gets it as its timeout instead (the client cancels the
    /// statement when it passes).
    public var statementTimeout: Duration?
    /// Whether connections go through a pooler that moves sessions between server connections.
    /// Default ``Pooling/none``.
    public var pooling: Pooling
    /// Where `LISTEN` connects, when not to ``connectionString``: a connection string straight to
    /// the server (or through a session-mode pooler), which a transaction pooler needs — it cannot
    /// keep a `LISTEN` between transactions.
    public var listenConnectionString: String?

    /// How connections reach the server.
    public enum Pooling: Sendable, Hashable {
        /// Straight to the server, or through a pooler in session mode (a client keeps its server
        /// connection): named prepared statements, the session set up once.
        case none
        /// Through a pooler in transaction mode — PgBouncer, pgcat, Supavisor — which may hand
        /// each transaction, and each statement outside one, to a different server connection:
        ///
        /// - statements are unnamed (`PQexecParams`), unless `preparedStatements` says the pooler
        ///   keeps protocol-level prepared statements (PgBouncer 1.21 or later with
        ///   `max_prepared_statements` above 0);
        /// - the session sets only `TimeZone` and `DateStyle`, which PgBouncer tracks and restores
        ///   on whichever server connection a client gets (floats use PostgreSQL 12's default
        ///   `extra_float_digits`); the default statement timeout is the client's;
        /// - `LISTEN` uses ``PostgresConfiguration/listenConnectionString``.
        case transactionPooler(preparedStatements: Bool)
    }

    /// A configuration for `connectionString`.
    ///
    /// - Parameters:
    ///   - connectionString: A libpq connection string or URL.
    ///   - statementTimeout: The default statement timeout; `nil` for the server's.
    ///   - pooling: Whether a transaction pooler is in the way.
    ///   - listenConnectionString: Where `LISTEN` connects; `nil` for `connectionString`.
    public init(
        connectionString: String,
        statementTimeout: Duration? = nil,
        pooling: Pooling = .none,
        listenConnectionString: String? = nil
    ) {
        self.connectionString = connectionString
        self.statementTimeout = statementTimeout
        self.pooling = pooling
        self.listenConnectionString = listenConnectionString
    }

    /// The configuration for a client behind PgBouncer (or pgcat, Supavisor) in transaction mode:
    /// unnamed statements, no session setting the pooler does not track, the statement timeout
    /// kept by the client, `LISTEN` on a direct connection.
    ///
    /// ```swift
    /// let client = PostgresClient(
    ///     configuration: .behindTransactionPooler(
    ///         "host=pgbouncer.internal port=6432 dbname=app user=app",
    ///         listenConnectionString: "host=db.internal dbname=app user=app"
    ///     )
    /// )
    /// ```
    ///
    /// - Parameters:
    ///   - connectionString: The pooler's connection string.
    ///   - listenConnectionString: A connection string straight to the server, for `LISTEN`;
    ///     without one, `notifications(on:)` and `listen(on:)` end at once (with an error in the log).
    ///   - statementTimeout: Each statement's default timeout, kept by the client.
    ///   - preparedStatements: Whether the pooler keeps protocol-level prepared statements
    ///     (PgBouncer 1.21 or later with `max_prepared_statements` set).
    public static func behindTransactionPooler(
        _ connectionString: String,
        listenConnectionString: String? = nil,
        statementTimeout: Duration? = nil,
        preparedStatements: Bool = false
    ) -> PostgresConfiguration {
        PostgresConfiguration(
            connectionString: connectionString,
            statementTimeout: statementTimeout,
            pooling: .transactionPooler(preparedStatements: preparedStatements),
            listenConnectionString: listenConnectionString
        )
    }

    /// Whether a transaction pooler is in the way.
    var isBehindTransactionPooler: Bool {
        if case .transactionPooler = pooling { return true }
        return false
    }

    /// Whether statements are prepared with names.
    var usesNamedStatements: Bool {
        switch pooling {
        case .none: true
        case .transactionPooler(let preparedStatements): preparedStatements
        }
    }

    /// The connection string's options without secrets, such as
    /// `user=app dbname=app host=db.internal port=5432`, and the pooling when there is one.
    public var description: String {
        let options =
            (try? Self.redactedDescription(of: connectionString)) ?? "(a connection string libpq cannot parse)"
        switch pooling {
        case .none: return options
        case .transactionPooler(let prepared):
            return options + " (behind a transaction pooler\(prepared ? ", with prepared statements" : ""))"
        }
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
