import Foundation
public import SyncBridgeSQL
import Testing

/// What the fault scenarios need to know about one database: how to reach it, a statement that
/// sleeps, how to see that the server runs a statement, and which errors are which. Each
/// database's test target makes one; the scenarios are written once for both.
public struct FaultTarget<Session: SQLSession>: Sendable {
    /// A client to the server (through `port` when given: a proxy), with the pool and grace period
    /// the scenarios use (2 connections, grace 1 s).
    public let makeClient: @Sendable (_ port: Int?) -> SQLClient<Session>
    /// The server's port.
    public let port: Int
    /// A statement that sleeps `seconds` on the server; each scenario uses its own length, so that
    /// ``isRunning`` finds its statement alone.
    public let sleep: @Sendable (_ seconds: Double) -> SQLQuery
    /// Whether the server runs the sleep of `seconds` now (asked over a connection of its own).
    public let isRunning: @Sendable (_ seconds: Double) async throws -> Bool
    /// The database's typed timeout error.
    public let isTimeout: @Sendable (any Error) -> Bool
    /// The database's typed "the connection broke" error.
    public let isConnectionClosed: @Sendable (any Error) -> Bool

    /// Describes a database for the scenarios.
    public init(
        port: Int,
        makeClient: @escaping @Sendable (_ port: Int?) -> SQLClient<Session>,
        sleep: @escaping @Sendable (_ seconds: Double) -> SQLQuery,
        isRunning: @escaping @Sendable (_ seconds: Double) async throws -> Bool,
        isTimeout: @escaping @Sendable (any Error) -> Bool,
        isConnectionClosed: @escaping @Sendable (any Error) -> Bool
    ) {
        self.port = port
        self.makeClient = makeClient
        self.sleep = sleep
        self.isRunning = isRunning
        self.isTimeout = isTimeout
        self.isConnectionClosed = isConnectionClosed
    }

    /// The grace period the scenarios' clients use.
    public static var gracePeriod: Double { 1 }

    // MARK: A frozen server

    /// A statement runs when the server freezes (`freeze`, as a host that stopped answering);
    /// `body` gets the statement's task. Then the server thaws, the pool serves again, and it shuts
    /// down within a deadline (every connection closed, its thread ended).
    public func withFrozenServer(
        statementTimeout: Duration? = nil,
        freeze: @escaping @Sendable () -> Void,
        thaw: @escaping @Sendable () -> Void,
        _ body: @escaping @Sendable (Task<[SQLRow], any Error>) async throws -> Void
    ) async throws {
        let client = makeClient(nil)
        defer { thaw() }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await client.run() }
            defer { group.cancelAll() }
            let statement = Task { try await client.query(sleep(30), timeout: statementTimeout) }
            try await waitUntil { try await isRunning(30) }
            freeze()
            try await body(statement)
            thaw()
            let one = try await withDeadline(20) { try await client.query("SELECT 1").first?.decode(Int.self, at: 0) }
            #expect(one == 1)
            try await withDeadline(20) { await client.shutdown() }
        }
    }

    /// Cancels a statement on a frozen server: `cancel()` returns at once, and the caller gets
    /// `CancellationError` within the grace period.
    public func cancelOnFrozenServer(
        freeze: @escaping @Sendable () -> Void,
        thaw: @escaping @Sendable () -> Void
    ) async throws {
        try await withFrozenServer(freeze: freeze, thaw: thaw) { statement in
            let start = ContinuousClock.now
            statement.cancel()
            let cancelTook = (ContinuousClock.now - start).seconds
            #expect(cancelTook < 0.1 * Double(slowdown), "cancel() took \(cancelTook) s")
            let outcome = try await withDeadline(10) { await statement.result }
            let waited = (ContinuousClock.now - start).seconds
            #expect(throws: CancellationError.self) { try outcome.get() }
            #expect(
                waited < Self.gracePeriod + 1.5 * Double(slowdown),
                "the caller waited \(waited) s (grace period 1 s)"
            )
        }
    }

    /// A statement's 3 s timeout passes while the server is frozen: the caller gets the typed
    /// timeout error within the timeout and the grace period.
    public func timeoutOnFrozenServer(
        freeze: @escaping @Sendable () -> Void,
        thaw: @escaping @Sendable () -> Void
    ) async throws {
        let start = ContinuousClock.now
        try await withFrozenServer(statementTimeout: .seconds(3), freeze: freeze, thaw: thaw) { statement in
            let outcome = try await withDeadline(15) { await statement.result }
            let waited = (ContinuousClock.now - start).seconds
            #expect(throws: (any Error).self) { try outcome.get() }
            if case .failure(let error) = outcome { #expect(isTimeout(error), "\(error)") }
            #expect(
                waited < 3 + Self.gracePeriod + 2.5 * Double(slowdown),
                "the caller waited \(waited) s (timeout 3 s, grace period 1 s)"
            )
        }
    }

    // MARK: Through a fault proxy

    /// `body` runs with a client that reaches the server through a ``FaultProxy``; afterwards the
    /// proxy forwards again, and the pool must serve (on a new connection where the old one was
    /// abandoned).
    public func withProxiedClient(
        _ body: @escaping @Sendable (SQLClient<Session>, FaultProxy) async throws -> Void
    ) async throws {
        let proxy = try FaultProxy(forwardingTo: port)
        defer { proxy.stop() }
        let client = makeClient(proxy.port)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await client.run() }
            defer { group.cancelAll() }
            #expect(try await client.query("SELECT 1").count == 1)
            try await body(client, proxy)
            proxy.resume()
            let two = try await withDeadline(20) { try await client.query("SELECT 2").first?.decode(Int.self, at: 0) }
            #expect(two == 2)
        }
    }

    /// A half-open connection (the proxy stops forwarding, nothing closes): a statement with a 1 s
    /// timeout gets the typed timeout error within the timeout and the grace period.
    public func halfOpenTimeout() async throws {
        try await withProxiedClient { client, proxy in
            proxy.pause()
            let start = ContinuousClock.now
            let error = await #expect(throws: (any Error).self) {
                try await withDeadline(10) {
                    try await client.query("SELECT 1", timeout: .seconds(1))
                }
            }
            let waited = (ContinuousClock.now - start).seconds
            if let error { #expect(isTimeout(error), "\(error)") }
            #expect(
                waited < 1 + Self.gracePeriod + 1.5 * Double(slowdown),
                "waited \(waited) s (timeout 1 s, grace period 1 s)"
            )
        }
    }

    /// A statement runs when the connection goes half-open, then is cancelled: the cancel request
    /// cannot get through either, and the caller gets `CancellationError` within the grace period.
    public func halfOpenCancel() async throws {
        try await withProxiedClient { client, proxy in
            let statement = Task { try await client.query(sleep(10.01)) }
            try await waitUntil { try await isRunning(10.01) }
            proxy.pause()
            let start = ContinuousClock.now
            statement.cancel()
            let outcome = try await withDeadline(10) { await statement.result }
            let waited = (ContinuousClock.now - start).seconds
            #expect(throws: CancellationError.self) { try outcome.get() }
            #expect(waited < Self.gracePeriod + 1.5 * Double(slowdown), "waited \(waited) s (grace period 1 s)")
        }
    }

    /// The proxy resets the connection of a running statement: the statement fails at once with
    /// the typed connection error.
    public func resetMidStatement() async throws {
        try await withProxiedClient { client, proxy in
            let statement = Task { try await client.query(sleep(10.02)) }
            try await waitUntil { try await isRunning(10.02) }
            let start = ContinuousClock.now
            proxy.resetAll()
            let outcome = try await withDeadline(10) { await statement.result }
            let waited = (ContinuousClock.now - start).seconds
            #expect(throws: (any Error).self) { try outcome.get() }
            if case .failure(let error) = outcome { #expect(isConnectionClosed(error), "\(error)") }
            #expect(waited < 1.5 * Double(slowdown), "waited \(waited) s")
        }
    }
}

/// The server is killed while 100 tasks insert rows with known ids through `client` (8
/// connections): every task ends soon after with the typed connection error; once the server is
/// back, the pool serves again without a restart of the client, and every acknowledged row is there
/// exactly once.
///
/// - Parameters:
///   - client: A client of the server, not yet running.
///   - createTable: Creates the table `killed (id int PRIMARY KEY)`.
///   - isConnectionError: The database's typed connection errors (closed, failed).
///   - crash: Kills the server.
///   - relaunch: Starts it again.
public func killUnderLoad<Session: SQLSession>(
    client: SQLClient<Session>,
    createTable: SQLQuery,
    isConnectionError: @escaping @Sendable (any Error) -> Bool,
    crash: @escaping @Sendable () async throws -> Void,
    relaunch: @escaping @Sendable () async throws -> Void
) async throws {
    try await withThrowingDiscardingTaskGroup { group in
        group.addTask { try await client.run() }
        defer { group.cancelAll() }
        try await client.execute(createTable)
        let run = try await withDeadline(60) {
            try await insertsUntilFailure(
                client: client,
                table: "killed",
                isConnectionError: isConnectionError,
                kill: crash
            )
        }
        #expect(run.unexpected.isEmpty, "\(run.unexpected.prefix(3))")
        #expect(run.failed.count == 100, "every task ended with an error")
        // Measured from the first task that saw the failure (the kill itself may wait for a thread
        // of the throwaway servers' pool): 10–15 ms on an idle machine; the bound leaves room for a
        // slow, shared CI machine. (Every bound here is multiplied by `slowdown` under
        // ThreadSanitizer.)
        let (firstEnd, lastEnd) = try (#require(run.endedAt.min()), #require(run.endedAt.max()))
        #expect(
            (lastEnd - firstEnd).seconds < 3 * Double(slowdown),
            "the last task ended \((lastEnd - firstEnd).seconds) s after the first"
        )
        try await relaunch()
        let recovered = ContinuousClock.now
        try await waitUntil(10) { (try? await client.query("SELECT 1")) != nil }
        #expect((ContinuousClock.now - recovered).seconds < 3 * Double(slowdown))
        // Every acknowledged insert is there, once; of the failed ones, at most those in flight.
        let rows = Set(try await client.query("SELECT id FROM killed").map { try $0.decode(Int.self, at: 0) })
        #expect(
            run.acknowledged.isSubset(of: rows),
            "\(run.acknowledged.subtracting(rows).count) acknowledged rows missing"
        )
        #expect(rows.subtracting(run.acknowledged).isSubset(of: Set(run.failed.keys)))
    }
}
