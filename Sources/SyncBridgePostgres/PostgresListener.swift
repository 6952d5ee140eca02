public import Logging
public import Metrics
import SyncBridge
public import SyncBridgeSQL

/// A notification sent with `NOTIFY` or `pg_notify`.
public struct PostgresNotification: Sendable, Hashable {
    /// The channel it was sent on.
    public let channel: String
    /// The payload (empty when none was given).
    public let payload: String
    /// The process id of the server backend that sent it.
    public let backendPID: Int32
}

/// Listens for notifications on one dedicated connection, for every subscriber of a client.
///
/// A task polls the connection (on its own thread) for notifications and hands them to the
/// subscribers of their channel. When the connection breaks, it reconnects with backoff and
/// issues `LISTEN` again for every channel; notifications sent while it was disconnected are lost,
/// as PostgreSQL does not keep them.
///
/// Every ``PostgresClient`` has one (its ``SQLSession/ClientExtension``), used through
/// ``SQLClient/notifications(on:)`` and ``SQLClient/listen(on:)``.
public final class PostgresListener: SQLClientExtension {
    private let connect: @Sendable () async throws -> PostgresConnection
    private let logger: Logger
    /// Set when the client is behind a transaction pooler without a direct connection string for
    /// `LISTEN`: subscriptions end at once, with this in the log.
    private let refusal: String?
    private let state = Locked(State())
    private let pollInterval: Duration = .milliseconds(50)

    private struct State {
        var subscribers: [String: [UInt64: AsyncStream<PostgresNotification>.Continuation]] = [:]
        var nextSubscriberID: UInt64 = 0
        var loop: Task<Void, Never>?
        /// Channels the current connection listens to.
        var listening: Set<String> = []
        /// Tasks waiting until a channel is listened to, by channel and waiter id.
        var listenWaiters: [String: [UInt64: CheckedContinuation<Void, Never>]] = [:]
        var nextWaiterID: UInt64 = 0
        var isShutDown = false
    }

    /// A listener that connects with `configuration` (without its statement timeout; to its
    /// ``PostgresConfiguration/listenConnectionString`` when it has one) when the first channel is
    /// subscribed to.
    public init(configuration: PostgresConfiguration, logger: Logger, metricsFactory: any MetricsFactory) {
        var configuration = configuration
        configuration.statementTimeout = nil
        if let direct = configuration.listenConnectionString {
            configuration.connectionString = direct
            configuration.pooling = .none
            refusal = nil
        } else if configuration.isBehindTransactionPooler {
            refusal =
                "LISTEN cannot work through a transaction pooler (it would end with the transaction): set PostgresConfiguration.listenConnectionString to a connection string straight to the server"
        } else {
            refusal = nil
        }
        self.logger = logger
        self.connect = { [configuration] in
            try await PostgresConnection.connect(
                configuration: configuration,
                logger: logger,
                metricsFactory: metricsFactory
            )
        }
    }

    /// Subscribes to `channel`; the stream ends when the listener shuts down.
    func subscribe(_ channel: String) -> AsyncStream<PostgresNotification> {
        let (stream, continuation) = AsyncStream<PostgresNotification>.makeStream()
        if let refusal {
            logger.error(
                "\(refusal); the notifications of this channel end at once",
                metadata: ["channel": "\(channel)"]
            )
        }
        let id = state.withLock { state -> UInt64? in
            guard !state.isShutDown, refusal == nil else { return nil }
            state.nextSubscriberID += 1
            state.subscribers[channel, default: [:]][state.nextSubscriberID] = continuation
            if state.loop == nil {
                state.loop = Task { await self.runLoop() }
            }
            return state.nextSubscriberID
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { state in
                state.subscribers[channel]?[id] = nil
                if state.subscribers[channel]?.isEmpty == true { state.subscribers[channel] = nil }
            }
        }
        return stream
    }

    /// Subscribes to `channel` and returns once the connection listens to it, so that a
    /// notification sent after this returns reaches the stream. Returns early when the listener
    /// shuts down (the stream is then finished) or the task is cancelled.
    func subscribeWhenListening(_ channel: String) async -> AsyncStream<PostgresNotification> {
        let stream = subscribe(channel)
        let id = state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let waits = state.withLock { state -> Bool in
                    guard !state.isShutDown, refusal == nil, !state.listening.contains(channel), !Task.isCancelled
                    else { return false }
                    state.listenWaiters[channel, default: [:]][id] = continuation
                    return true
                }
                if !waits { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.listenWaiters[channel]?.removeValue(forKey: id) }?.resume()
        }
        return stream
    }

    /// Stops listening and ends every subscriber's stream.
    public func shutdown() async {
        let (loop, continuations, waiters) = state.withLock { state in
            state.isShutDown = true
            defer {
                state.subscribers = [:]
                state.listenWaiters = [:]
            }
            return (
                state.loop, state.subscribers.values.flatMap(\.values), state.listenWaiters.values.flatMap(\.values)
            )
        }
        for waiter in waiters { waiter.resume() }
        loop?.cancel()
        await loop?.value
        for continuation in continuations { continuation.finish() }
    }

    /// Connects, keeps `LISTEN` in step with the subscribed channels, polls, delivers; reconnects
    /// with backoff when the connection breaks.
    private func runLoop() async {
        var backoff: Duration = .milliseconds(50)
        while !Task.isCancelled {
            let connection: PostgresConnection
            do {
                connection = try await connect()
                backoff = .milliseconds(50)
            } catch {
                logger.warning(
                    "listener connection failed; retrying",
                    metadata: ["error": "\(error)", "retry_in": "\(backoff)"]
                )
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
                continue
            }
            state.withLock { $0.listening = [] }
            do {
                while !Task.isCancelled {
                    try await synchronizeChannels(on: connection)
                    for notification in try await connection.pollNotifications(timeout: pollInterval) {
                        deliver(notification)
                    }
                }
            } catch {
                logger.warning("listener connection lost; reconnecting", metadata: ["error": "\(error)"])
            }
            await connection.close()
        }
    }

    /// Issues `LISTEN` and `UNLISTEN` so that the connection listens to exactly the subscribed
    /// channels.
    private func synchronizeChannels(on connection: PostgresConnection) async throws {
        let (wanted, current) = state.withLock { (Set($0.subscribers.keys), $0.listening) }
        for channel in wanted.subtracting(current) {
            try await connection.runControl("LISTEN \(Self.quoteIdentifier(channel))")
            let waiters = state.withLock { state in
                state.listening.insert(channel)
                return state.listenWaiters.removeValue(forKey: channel).map { Array($0.values) } ?? []
            }
            for waiter in waiters { waiter.resume() }
        }
        for channel in current.subtracting(wanted) {
            try await connection.runControl("UNLISTEN \(Self.quoteIdentifier(channel))")
            state.withLock { _ = $0.listening.remove(channel) }
        }
    }

    private func deliver(_ notification: PostgresNotification) {
        let continuations = state.withLock { Array(($0.subscribers[notification.channel] ?? [:]).values) }
        for continuation in continuations { continuation.yield(notification) }
    }

    /// `"name"`, with embedded quotes doubled: a channel name is an identifier, which cannot be
    /// a bound parameter.
    static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\""
    }
}
