import FoundationEssentials

/// Where and how to connect to MariaDB or MySQL, with safe defaults.
///
/// Unlike Connector/C's own defaults, every network timeout is finite, text is `utf8mb4`,
/// several statements in one string are refused, `LOAD DATA LOCAL INFILE` is off, the session runs
/// in strict SQL mode (a value that does not fit is an error, not a silent truncation) and in UTC.
/// Auto-reconnect is never used: a pool replaces broken connections instead, because a silent
/// reconnect loses the session's state (transactions, prepared statements, variables).
///
/// ```swift
/// var configuration = try MariaDBConfiguration(url: "mariadb://app:secret@db.internal/shop")
/// configuration.readTimeout = .seconds(600)   // long reports
/// let client = MariaDBClient(configuration: configuration)
/// ```
///
/// ``description`` never shows the password.
public struct MariaDBConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// The server's host name or address, reached over TCP, also when it is `localhost` (ignored
    /// when ``unixSocket`` is set).
    public var host: String
    /// The server's TCP port.
    public var port: Int
    /// A unix socket path to connect through instead of TCP.
    public var unixSocket: String?
    /// The user name.
    public var user: String
    /// The password; never shown in descriptions, logs or errors.
    public var password: String?
    /// The default database, if any.
    public var database: String?
    /// Whether and how to use TLS.
    public var tls: TLS
    /// The character set of the connection. Default `utf8mb4` (all of Unicode).
    public var characterSet = "utf8mb4"
    /// How long connecting may take. Default 10 s.
    public var connectTimeout: Duration = .seconds(10)
    /// How long a read from the server may wait, so that a dead server or network is noticed: a
    /// statement that sends nothing back for longer fails and its connection is discarded.
    /// Default 300 s; raise it for longer statements. For a limit on one statement, use the
    /// `timeout:` parameter of the query methods instead.
    public var readTimeout: Duration = .seconds(300)
    /// How long a write to the server may wait. Default 300 s.
    public var writeTimeout: Duration = .seconds(300)
    /// Whether `LOAD DATA LOCAL INFILE` may read files of this machine when the server asks.
    /// Default `false`: a hostile server could otherwise read any file the process can.
    public var allowLocalInfile = false
    /// Adds `STRICT_ALL_TABLES` to the session's SQL mode, so that a value that does not fit a
    /// column is an error instead of being truncated with a warning. Default `true`.
    public var strictMode = true
    /// The session's `max_statement_time`: the server aborts statements that run longer. `nil`
    /// keeps the server's default. With ``TimeoutStrategy/clientCancels`` (the default behind a
    /// proxy), it is each `query`'s and `execute`'s timeout instead, kept by the client.
    public var statementTimeout: Duration?
    /// Declares that connections go through a proxy that multiplexes them — ProxySQL, MaxScale —
    /// and must be able to parse everything the session sends: the session setup sends literal
    /// values only (`time_zone = '+00:00'`, `sql_mode = '…'` computed on the client, see
    /// ``sqlMode``), and timeouts default to ``TimeoutStrategy/clientCancels``, which does not
    /// rewrite statements. Default `false`.
    public var isBehindProxy = false
    /// How per-statement timeouts (the `timeout:` of the query methods, and ``statementTimeout``)
    /// are enforced; `nil` (the default) for ``TimeoutStrategy/server``, or
    /// ``TimeoutStrategy/clientCancels`` when ``isBehindProxy`` is set.
    public var timeoutStrategy: TimeoutStrategy?
    /// The session's SQL mode when it must be sent as a literal (``isBehindProxy``): `nil` (the
    /// default) for the server version's default modes — MariaDB 10.2.4 and later:
    /// `STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION`;
    /// MySQL 8: `ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION`
    /// — with `STRICT_ALL_TABLES` added when ``strictMode`` is on. Set it when the server's global
    /// mode differs from its version's default. Not used without a proxy, where the session adds
    /// `STRICT_ALL_TABLES` to whatever mode the server has.
    public var sqlMode: String?

    /// How a statement's timeout is enforced.
    public enum TimeoutStrategy: Sendable, Hashable {
        /// The server ends the statement: it is sent as
        /// `SET STATEMENT max_statement_time = N FOR …`, and the session's default is a
        /// `max_statement_time` setting. No extra connection; but a proxy cannot parse it.
        case server
        /// The client keeps the deadline and, when it passes, asks the server to end the statement
        /// with `KILL QUERY` from a side connection (as for a cancelled task). Statements are sent
        /// as written.
        case clientCancels
    }

    /// Whether ``SQLConnection/executeMany(_:rows:timeout:fileID:line:)`` sends its rows in bulk
    /// commands (`COM_STMT_BULK_EXECUTE`: one round trip for thousands of rows, MariaDB 10.2 and
    /// later) rather than one execution per row. `nil` (the default) for bulk commands, except
    /// behind a proxy (``isBehindProxy``: ProxySQL does not route them) and on servers without
    /// them (MySQL), where rows go one by one.
    public var bulkExecution: Bool?

    /// The strategy in force: ``timeoutStrategy``, or the default for ``isBehindProxy``.
    var effectiveTimeoutStrategy: TimeoutStrategy {
        timeoutStrategy ?? (isBehindProxy ? .clientCancels : .server)
    }
    /// TCP keepalives on the connection's socket: the first probe after this much idle time, then
    /// one every ``keepaliveInterval``, ``keepaliveCount`` unanswered probes and the connection is
    /// dead. With ``tcpUserTimeout``, a server that vanished without closing the connection (a
    /// half-open connection) is noticed within about a minute, idle or not. Default 30 s; `nil`
    /// leaves the socket's keepalives off.
    public var keepaliveIdle: Duration? = .seconds(30)
    /// The time between keepalive probes. Default 10 s.
    public var keepaliveInterval: Duration = .seconds(10)
    /// Unanswered keepalive probes before the connection is dead. Default 3.
    public var keepaliveCount = 3
    /// How long sent data may stay unacknowledged before the connection is dead
    /// (`TCP_USER_TIMEOUT`). Default 30 s; `nil` for the kernel's default.
    public var tcpUserTimeout: Duration? = .seconds(30)

    /// How TLS is used.
    public struct TLS: Sendable, Hashable {
        enum Mode: Sendable, Hashable {
            case disabled
            case preferred
            case required
            case verifyIdentity
        }

        let mode: Mode
        /// A file of trusted CA certificates (PEM).
        public var certificateAuthorityFile: String?
        /// A client certificate (PEM), for servers that require one.
        public var certificateFile: String?
        /// The client certificate's private key (PEM).
        public var keyFile: String?

        /// No TLS.
        public static let disabled = TLS(mode: .disabled)
        /// TLS when the server offers it, without verifying its certificate; plain text
        /// otherwise. Connector/C's own default.
        public static let preferred = TLS(mode: .preferred)
        /// TLS or no connection; the server's certificate is not verified.
        public static let required = TLS(mode: .required)

        /// TLS with the server's certificate verified against `certificateAuthorityFile` (or the
        /// system's CAs) and its name checked against the host.
        public static func verifyIdentity(certificateAuthorityFile: String? = nil) -> TLS {
            var tls = TLS(mode: .verifyIdentity)
            tls.certificateAuthorityFile = certificateAuthorityFile
            return tls
        }

        init(mode: Mode) {
            self.mode = mode
        }

        var name: String {
            switch mode {
            case .disabled: "disabled"
            case .preferred: "preferred"
            case .required: "required"
            case .verifyIdentity: "verify-identity"
            }
        }
    }

    /// A configuration for a TCP connection.
    ///
    /// - Parameters:
    ///   - host: The server's host name or address. Default `127.0.0.1`.
    ///   - port: The server's port. Default 3306.
    ///   - user: The user name.
    ///   - password: The password.
    ///   - database: The default database.
    ///   - tls: Whether and how to use TLS. Default ``TLS/preferred``.
    public init(
        host: String = "127.0.0.1",
        port: Int = 3306,
        user: String,
        password: String? = nil,
        database: String? = nil,
        tls: TLS = .preferred
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.tls = tls
    }

    /// A configuration for a unix-socket connection.
    ///
    /// - Parameters:
    ///   - unixSocket: The socket's path.
    ///   - user: The user name.
    ///   - password: The password.
    ///   - database: The default database.
    public init(unixSocket: String, user: String, password: String? = nil, database: String? = nil) {
        self.init(host: "localhost", port: 3306, user: user, password: password, database: database, tls: .disabled)
        self.unixSocket = unixSocket
    }

    /// Parses a `mariadb://` or `mysql://` URL:
    /// `mariadb://user:password@host:port/database?option=value&…`.
    ///
    /// User and password may be percent-encoded. Options: `socket` (a unix socket path),
    /// `tls` (`disabled`, `preferred`, `required`, `verify-identity`), `tls-ca`, `tls-cert`,
    /// `tls-key`, `connect-timeout`, `read-timeout`, `write-timeout` and `statement-timeout`
    /// (seconds, fractions allowed), `charset`, `local-infile`, `strict` and `proxy` (`true`/`false`),
    /// `timeout-strategy` (`server`, `client`).
    ///
    /// - Throws: ``MariaDBError`` with kind ``MariaDBError/Kind/invalidConfiguration`` naming
    ///   what is wrong (never the password).
    public init(url: String) throws {
        func invalid(_ reason: String) -> MariaDBError {
            MariaDBError(kind: .invalidConfiguration, message: "invalid MariaDB URL: \(reason)")
        }
        guard let components = URLComponents(string: url) else {
            throw invalid("not a URL (expected mariadb://user:password@host:port/database)")
        }
        guard let scheme = components.scheme?.lowercased(), scheme == "mariadb" || scheme == "mysql" else {
            throw invalid(
                "the scheme must be mariadb:// or mysql://, not \(components.scheme.map { "\($0)://" } ?? "missing")"
            )
        }
        guard let user = components.user, !user.isEmpty else {
            throw invalid("no user name (mariadb://user@host/database)")
        }
        let host = components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        var path = components.path
        while path.hasPrefix("/") { path.removeFirst() }
        self.init(
            host: host,
            port: components.port ?? 3306,
            user: user,
            password: components.password,
            database: path.isEmpty ? nil : path
        )
        for item in components.queryItems ?? [] {
            let value = item.value ?? ""
            func seconds() throws -> Duration {
                guard let seconds = Double(value), seconds.isFinite, seconds > 0 else {
                    throw invalid("\(item.name) must be a positive number of seconds, not '\(value)'")
                }
                return .milliseconds(Int64((seconds * 1000).rounded(.up)))
            }
            func flag() throws -> Bool {
                switch value.lowercased() {
                case "true", "1", "yes", "on": return true
                case "false", "0", "no", "off": return false
                default: throw invalid("\(item.name) must be true or false, not '\(value)'")
                }
            }
            switch item.name.lowercased() {
            case "socket", "unix-socket", "unix_socket":
                unixSocket = value
            case "tls", "ssl", "ssl-mode", "sslmode":
                switch value.lowercased() {
                case "disabled", "disable", "false", "off": tls = .disabled
                case "preferred", "prefer": tls = .preferred
                case "required", "require", "true", "on": tls = .required
                case "verify-identity", "verify_identity", "verify-full": tls = .verifyIdentity()
                default: throw invalid("tls must be disabled, preferred, required or verify-identity, not '\(value)'")
                }
            case "tls-ca", "ssl-ca": tls.certificateAuthorityFile = value
            case "tls-cert", "ssl-cert": tls.certificateFile = value
            case "tls-key", "ssl-key": tls.keyFile = value
            case "connect-timeout", "connect_timeout": connectTimeout = try seconds()
            case "read-timeout", "read_timeout": readTimeout = try seconds()
            case "write-timeout", "write_timeout": writeTimeout = try seconds()
            case "statement-timeout", "statement_timeout", "max_statement_time": statementTimeout = try seconds()
            case "charset", "character-set": characterSet = value
            case "local-infile", "local_infile": allowLocalInfile = try flag()
            case "strict": strictMode = try flag()
            case "proxy", "behind-proxy": isBehindProxy = try flag()
            case "timeout-strategy", "timeout_strategy":
                switch value.lowercased() {
                case "server": timeoutStrategy = .server
                case "client", "client-cancels": timeoutStrategy = .clientCancels
                default: throw invalid("timeout-strategy must be server or client, not '\(value)'")
                }
            default:
                throw invalid("unknown option '\(item.name)'")
            }
        }
    }

    /// `mariadb://user@host:port/database` and the options that differ from the defaults; never
    /// the password.
    public var description: String {
        var text = "mariadb://\(user)@"
        if let unixSocket {
            text += "localhost/\(database ?? "")?socket=\(unixSocket)"
        } else {
            text += "\(host):\(port)/\(database ?? "")?tls=\(tls.name)"
        }
        if isBehindProxy { text += "&proxy=true" }
        return text
    }
}

extension MariaDBConfiguration: CustomDebugStringConvertible, CustomReflectable {
    /// The same as ``description``: no password.
    public var debugDescription: String { description }

    /// What `dump` and debuggers show: the fields, with the password masked.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "host": host, "port": port, "unixSocket": unixSocket as Any, "user": user,
                "password": password == nil ? "nil" : "********", "database": database as Any,
                "tls": tls.name,
            ]
        )
    }
}
