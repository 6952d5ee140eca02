import Foundation
import SyncBridge
public import SyncBridgeSQL
public import Testing

// Helpers shared by the test targets that talk to database servers. A plain target, not a
// product: users never see it.

/// Thrown by ``withDeadline(_:_:)`` when the operation is still running at the deadline.
public struct DeadlineExceeded: Error, CustomStringConvertible {
    /// The deadline that passed.
    public let seconds: Double
    /// Says that the operation hangs.
    public var description: String { "still running after \(seconds) s: it hangs" }
}

/// Runs `operation` and fails with ``DeadlineExceeded`` if it has not finished within `seconds`
/// (the operation is then cancelled), so that a hang fails the test instead of stalling the run.
/// The deadline guards against hangs, not for speed: under ThreadSanitizer it is `seconds` times
/// ``slowdown``.
public func withDeadline<T: Sendable>(
    _ seconds: Double,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let seconds = seconds * Double(slowdown)
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            throw DeadlineExceeded(seconds: seconds)
        }
        group.cancelAll()
        return value
    }
}

/// A value shared between tasks.
public final class Shared<Value: Sendable>: Sendable {
    private let storage: Locked<Value>
    /// Shares `value`.
    public init(_ value: Value) { storage = Locked(value) }
    /// Reads or changes the value under the lock.
    public func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { storage.withLock { body(&$0) } }
    /// The current value.
    public var value: Value { storage.current }
}

/// A one-shot gate that tasks wait on, opened by the test.
public final class Gate: Sendable {
    private let stream = AsyncStream<Void>.makeStream()

    /// A closed gate.
    public init() {}

    /// Opens the gate: every waiter, present and future, goes through.
    public func open() { stream.continuation.finish() }

    /// Waits until the gate opens; throws ``DeadlineExceeded`` after `seconds`, so that a gate
    /// that never opens (the code meant to open it failed) fails the test instead of hanging it.
    public func wait(seconds: Double = 30) async throws {
        let stream = self.stream.stream
        try await withDeadline(seconds) {
            for await _ in stream {}
        }
    }
}

/// A table name unique to one test, so that tests running in parallel never share tables.
public func uniqueTable(_ prefix: String) -> String {
    "\(prefix)_\(UInt32.random(in: 0...UInt32.max))"
}

/// How much slower than normal this process runs: 10 under ThreadSanitizer (whose runtime is
/// loaded when `__tsan_init` resolves), which slows code 5 to 15 times; 1 otherwise. Latency
/// bounds in tests are multiplied by it.
public let slowdown: Int64 = dlsym(dlopen(nil, RTLD_NOW), "__tsan_init") != nil ? 10 : 1

/// Whether the tests with tight time bounds run: the fault tests (frozen, half-open and reset
/// connections, a server killed under load) and the promptness of a cancel. They run in a pass of
/// their own (`SYNCBRIDGE_TIMED_TESTS=1 swift test --filter Timed`, as `Scripts/test.sh` does),
/// because on a 2-core machine the rest of the suite beside them stretches any latency.
public let timedTestsEnabled = ProcessInfo.processInfo.environment["SYNCBRIDGE_TIMED_TESTS"] == "1"

/// Why a timed test was skipped.
public let timedTestsNote: Comment =
    "runs in a pass of its own, on a machine other tests do not load: SYNCBRIDGE_TIMED_TESTS=1 swift test --filter Timed"

/// Whether the scale tests run: a thousand connections at once, which would load the machine
/// under every other test's time bounds. They run in a pass of their own
/// (`SYNCBRIDGE_SCALE_TESTS=1 swift test --filter Scale`, as `Scripts/test.sh` does).
public let scaleTestsEnabled = ProcessInfo.processInfo.environment["SYNCBRIDGE_SCALE_TESTS"] == "1"

/// Why a scale test was skipped.
public let scaleTestsNote: Comment =
    "runs in a pass of its own, beside no other test: SYNCBRIDGE_SCALE_TESTS=1 swift test --filter Scale"

/// Runs `body` with `connection` and closes the connection afterwards, also when `body` throws.
public func withClosing<Connection: PooledConnection, T: Sendable>(
    _ connection: Connection,
    _ body: (Connection) async throws -> T
) async throws -> T {
    do {
        let result = try await body(connection)
        await connection.close()
        return result
    } catch {
        await connection.close()
        throw error
    }
}

/// Threads for the tests' own heavy synchronous work (building megabytes of test data): on the
/// cooperative pool, a debug build's loops would stall it, and the test pass with the watchdog on
/// would rightly report them.
private let testWorkPool = BlockingPool(name: "sb-test-work", threadCount: 2)

/// Runs `body`, synchronous and CPU-heavy, off the cooperative pool and returns its result.
public func offloaded<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await testWorkPool.run { _ in try body() }
}

/// Runs `count` statements at once on `client`, whose server cannot be reached, and returns what
/// each one threw and how long it took, in seconds. A statement that succeeds is a test failure
/// of the caller's to report (it returns `nil` for that one).
public func concurrentFailures<Session: SQLSession>(
    of client: SQLClient<Session>,
    count: Int = 20
) async throws -> [(error: (any Error)?, seconds: Double)] {
    try await withThrowingTaskGroup(of: ((any Error)?, Double).self) { group in
        for _ in 0..<count {
            group.addTask {
                let start = ContinuousClock.now
                do {
                    try await client.query("SELECT 1")
                    return (nil, (ContinuousClock.now - start).seconds)
                } catch {
                    return (error, (ContinuousClock.now - start).seconds)
                }
            }
        }
        var results: [((any Error)?, Double)] = []
        for try await result in group { results.append(result) }
        return results.map { (error: $0.0, seconds: $0.1) }
    }
}

extension Duration {
    /// The duration in seconds.
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// The names of this process's threads (`/proc/self/task/*/comm`).
public func threadNames() -> [String] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.compactMap { task in
        (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Waits until `condition` holds, checking every 10 ms; fails with ``DeadlineExceeded`` after
/// `seconds`.
public func waitUntil(_ seconds: Double = 10, _ condition: @escaping @Sendable () async throws -> Bool) async throws {
    try await withDeadline(seconds) {
        while try await !condition() { try await Task.sleep(for: .milliseconds(10)) }
    }
}

/// A socket's TCP keepalive settings: keepalives on, idle seconds, interval seconds, probe count,
/// user timeout in milliseconds (`getsockopt`).
public func keepaliveSettings(of socket: Int32) -> [Int32] {
    func get(_ level: Int32, _ option: Int32) -> Int32 {
        var value: Int32 = -1
        var size = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(socket, level, option, &value, &size)
        return value
    }
    let tcp = Int32(IPPROTO_TCP)
    return [
        get(SOL_SOCKET, SO_KEEPALIVE), get(tcp, TCP_KEEPIDLE), get(tcp, TCP_KEEPINTVL), get(tcp, TCP_KEEPCNT),
        get(tcp, TCP_USER_TIMEOUT),
    ]
}

/// What ``insertsUntilFailure(client:table:tasks:rowsPerTask:isConnectionError:)`` saw.
public struct InsertRun: Sendable {
    /// The ids whose insert returned successfully.
    public var acknowledged: Set<Int> = []
    /// The ids whose insert failed, with the error's description.
    public var failed: [Int: String] = [:]
    /// Errors that were not the typed connection error.
    public var unexpected: [String] = []
    /// When each task ended.
    public var endedAt: [ContinuousClock.Instant] = []
}

/// Runs `tasks` tasks, each inserting rows with known ids one at a time until its first error;
/// returns what each insert did. `kill` runs once every task has inserted a row. (However late the
/// kill comes on a loaded machine, every task still ends with the error it causes: `rowsPerTask`
/// only keeps the ids of different tasks apart.)
public func insertsUntilFailure<Session: SQLSession>(
    client: SQLClient<Session>,
    table: String,
    tasks: Int = 100,
    rowsPerTask: Int = 1_000_000,
    isConnectionError: @escaping @Sendable (any Error) -> Bool,
    kill: @escaping @Sendable () async throws -> Void
) async throws -> InsertRun {
    let run = Shared(InsertRun())
    let started = Shared(0)
    try await withThrowingTaskGroup(of: Void.self) { group in
        for task in 0..<tasks {
            group.addTask {
                for row in 0..<rowsPerTask {
                    let id = task * rowsPerTask + row
                    do {
                        try await client.execute("INSERT INTO \(unsafeSQL: table) (id) VALUES (\(id))")
                        run.withLock { _ = $0.acknowledged.insert(id) }
                        if row == 0 { started.withLock { $0 += 1 } }
                    } catch {
                        run.withLock { run in
                            run.failed[id] = "\(error)"
                            if !isConnectionError(error) { run.unexpected.append("\(error)") }
                        }
                        break
                    }
                }
                run.withLock { $0.endedAt.append(.now) }
            }
        }
        group.addTask {
            try await waitUntil(30) { started.value == tasks }
            try await kill()
        }
        try await group.waitForAll()
    }
    return run.value
}

/// Runs `body` with a server of its own, then stops it, also when `body` throws.
public func withServer<Server: Sendable>(
    _ server: Server,
    stop: (Server) async -> Void,
    _ body: (Server) async throws -> Void
) async throws {
    do {
        try await body(server)
    } catch {
        await stop(server)
        throw error
    }
    await stop(server)
}

/// Raises the process's limit of open files to its hard limit (at most 65,536), for tests that
/// open a thousand connections: a soft limit of 1,024 is common.
public func raiseOpenFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
    let wanted = min(limit.rlim_max, 65_536)
    guard limit.rlim_cur < wanted else { return }
    limit.rlim_cur = wanted
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

/// With `SYNCBRIDGE_TEST_SNAPSHOT=<path>` set, a snapshot of every pool, executor thread and
/// wait is written to `<path>` each second, from a thread of its own (it works while the
/// cooperative pool is stuck): what a hung test run was waiting for. Started by the first call.
public func writeSnapshotsIfAsked() {
    _ = snapshotWriter
}

private let snapshotWriter: Void = {
    guard let path = ProcessInfo.processInfo.environment["SYNCBRIDGE_TEST_SNAPSHOT"], !path.isEmpty else { return }
    let thread = Thread {
        while true {
            let json = SyncBridgeSnapshot.take().jsonString()
            try? json.write(toFile: path, atomically: true, encoding: .utf8)
            Thread.sleep(forTimeInterval: 1)
        }
    }
    thread.name = "test snapshots"
    thread.start()
}()

/// Checks the rows of the test servers' 1,000-row result `i, name, big` (`i` from 1 to 1,000;
/// `name` NULL when `i` is a multiple of 7, else `"v" + i`; `big` = -i × 10¹²): every row reads
/// its own values, in order, with its NULLs, whole or by index.
public func expectThousandRows(_ rows: [SQLRow], sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(rows.count == 1000, sourceLocation: sourceLocation)
    for (offset, row) in rows.enumerated() {
        let i = offset + 1
        let (id, name, big) = try row.decode((Int, String?, Int64).self)
        #expect(
            id == i && name == (i % 7 == 0 ? nil : "v\(i)") && big == -Int64(i) * 1_000_000_000_000,
            "row \(offset): \(row)",
            sourceLocation: sourceLocation
        )
        #expect(row.values == Array(row) && row.count == 3, sourceLocation: sourceLocation)
    }
    #expect(rows[699].values == [.int(700), .null, .int(-700_000_000_000_000)], sourceLocation: sourceLocation)
    #expect(try rows[999].decode(String?.self, named: "name") == "v1000", sourceLocation: sourceLocation)
}
