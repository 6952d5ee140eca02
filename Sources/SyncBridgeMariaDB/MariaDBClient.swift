import CMariaDB
import Logging
import Metrics
import ServiceLifecycle
import SyncBridge
public import SyncBridgeSQL

/// MariaDB/MySQL through a pool of connections, each on its own thread: the entry point for
/// applications. The same surface as `PostgresClient`: statements with bound values, typed rows,
/// streaming, transactions, and legacy Connector/C code on a pooled connection's thread.
///
/// ```swift
/// let client = MariaDBClient(configuration: try MariaDBConfiguration(url: "mariadb://app:secret@db/shop"))
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await client.run() }   // upkeep; or add `client` to a ServiceGroup
///     let rows = try await client.query("SELECT name FROM products WHERE id = \(id)")
///     try await client.withTransaction { connection in
///         try await connection.execute("UPDATE stock SET quantity = quantity - \(n) WHERE sku = \(sku)")
///         try await connection.execute("INSERT INTO orders (sku, quantity) VALUES (\(sku), \(n))")
///     }
///     group.cancelAll()
/// }
/// ```
///
/// Everything is ``SQLClient``'s (create one with
/// ``SQLClient/init(configuration:poolConfiguration:ioThreads:name:cancellationGracePeriod:logger:metricsFactory:)``); MariaDB adds
/// ``SQLDatabase/insert(_:timeout:fileID:line:)``.
public typealias MariaDBClient = SQLClient<MariaDBSession>
