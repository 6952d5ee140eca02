// The facade is SyncBridgeSQL's client and connection over this database's session: its statements,
// transactions and streaming are declared there. Importing the facade imports them too.
@_exported public import SyncBridgeSQL
