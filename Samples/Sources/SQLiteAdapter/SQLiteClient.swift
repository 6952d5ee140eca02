// The adapter's clients are SyncBridgeSQL's: importing the adapter imports their API too, as
// importing SyncBridgePostgres or SyncBridgeMariaDB does.
@_exported public import SyncBridgeSQL

/// SQLite through a pool of connections, each on its own thread.
public typealias SQLiteClient = SQLClient<SQLiteSession>

/// One SQLite connection on its own thread.
public typealias SQLiteConnection = SQLConnection<SQLiteSession>
