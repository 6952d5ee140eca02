// The throwaway servers are part of the testing toolkit: importing SyncBridgeTesting brings
// ``TemporaryPostgres`` and ``TemporaryMariaDB`` with it.
@_exported public import SyncBridgeTemporaryServers
