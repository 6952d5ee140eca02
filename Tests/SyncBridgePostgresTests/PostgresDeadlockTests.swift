import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

@Suite("PostgreSQL pools and the deadlock detector; transaction retries")
struct PostgresDeadlockTests {
    func makeClient(_ name: String, connections: Int) async throws -> PostgresClient {
        let server = try await TemporaryPostgres.shared()
        var configuration = ConnectionPoolConfiguration()
        configuration.maximumConnections = connections
        // Scaled like every test bound: under ThreadSanitizer beside the whole suite, the busy-pool
        // test's 24 statements of 0.5 s through one connection once took more than 30 s.
        configuration.acquireTimeout = .seconds(30 * slowdown)
        return PostgresClient(
            connectionString: server.connectionString + " application_name=\(name)",
            configuration: configuration,
            name: name
        )
    }

    @Test(
        "pattern 4: a second lease from a full pool inside a transaction is reported at once with both lease sites, and throws in throw mode"
    )
    func nestedLease() async throws {
        let client = try await makeClient("sb-nested", connections: 1)
        // The connection is open before the clock starts (see `poolsInOppositeOrders`).
        #expect(try await client.query("SELECT 1").count == 1)
        // From the nested lease's start: the BEGIN before it may queue behind the rest of the
        // suite on a loaded machine, the detector's answer may not.
        let innerStart = Locked<ContinuousClock.Instant?>(nil)
        let outer = #line + 9
        let inner = #line + 10
        let reports = try await DeadlockDetectorTrait.collectReports(
            mode: .throwError,
            stuckWaitThreshold: .seconds(60)
        ) {
            // (Not inside #require: a macro's closure gives its calls the macro's line.)
            do {
                _ = try await withDeadline(20) {
                    try await client.withTransaction { _ in
                        innerStart.withLock { $0 = .now }
                        try await client.query("SELECT 1")
                    }
                }
                Issue.record("the nested lease did not throw")
            } catch let error as DeadlockError {
                #expect(error.report.pattern == .nestedPoolLease)
            }
        }
        // At once, not after the 30 s acquire timeout.
        let started = try #require(innerStart.current)
        #expect(ContinuousClock.now - started < .seconds(10 * slowdown))
        let report = try #require(reports.first)
        #expect(reports.count == 1)
        #expect(report.thrown)
        #expect(report.headline.contains("connection pool 'sb-nested' (1 connection)"))
        let sites = report.chain.compactMap(\.callSite)
        #expect(
            sites == [
                "SyncBridgePostgresTests/PostgresDeadlockTests.swift:\(inner)",
                "SyncBridgePostgresTests/PostgresDeadlockTests.swift:\(outer)",
            ]
        )
        // The pool is whole: its one connection went back.
        #expect(try await client.query("SELECT 41 + 1").first?.decode(Int.self, at: 0) == 42)
        await client.shutdown()
    }

    @Test(
        "expectDeadlockReport keeps a legacy nested lease flagged: it returns the report with both lease sites, the test does not fail, and the pool is whole afterwards"
    )
    func expectedNestedLease() async throws {
        let client = try await makeClient("sb-expect-nested", connections: 1)
        // Under ThreadSanitizer, opening the first connection alone can take longer than the
        // default 5 s stuck-wait threshold.
        let report = try await expectDeadlockReport(.nestedPoolLease, stuckWaitThreshold: .seconds(5 * slowdown)) {
            _ = try await client.withTransaction { _ in try await client.query("SELECT 1") }
        }
        #expect(report?.thrown == true)
        #expect(report?.chain.compactMap(\.callSite).count == 2)
        #expect(try await client.query("SELECT 3").first?.decode(Int.self, at: 0) == 3)
        await client.shutdown()
    }

    @Test(
        "pattern 4: a task that holds two leases of a full pool and asks for a third is reported with all three sites, oldest lease first"
    )
    func thirdLease() async throws {
        let client = try await makeClient("sb-third", connections: 2)
        let first = #line + 9
        let second = #line + 9
        let third = #line + 9
        let reports = try await DeadlockDetectorTrait.collectReports(
            mode: .throwError,
            stuckWaitThreshold: .seconds(60)
        ) {
            do {
                _ = try await withDeadline(20) {
                    try await client.withConnection { _ in
                        try await client.withConnection { _ in
                            try await client.query("SELECT 1")
                        }
                    }
                }
                Issue.record("the third lease did not throw")
            } catch let error as DeadlockError {
                #expect(error.report.pattern == .nestedPoolLease)
            }
        }
        let report = try #require(reports.first)
        #expect(reports.count == 1)
        #expect(
            report.headline
                == "a task that holds 2 connections of connection pool 'sb-third' (2 connections) asks it for another, and the pool cannot grow"
        )
        #expect(report.chain.first?.action == "asks for a third connection of")
        let file = "SyncBridgePostgresTests/PostgresDeadlockTests.swift"
        #expect(report.chain.compactMap(\.callSite) == ["\(file):\(third)", "\(file):\(first)", "\(file):\(second)"])
        #expect(report.chain.map(\.party).filter { $0.contains("leased by") }.count == 2)
        #expect(try await client.query("SELECT 2").first?.decode(Int.self, at: 0) == 2)
        await client.shutdown()
    }

    @Test(
        "pattern 4, report mode: the nested lease is reported when it starts waiting; the wait still ends when another task releases"
    )
    func nestedLeaseThatWaits() async throws {
        let client = try await makeClient("sb-nested2", connections: 2)
        let holding = Gate()
        let release = Gate()
        let released = Shared<Date?>(nil)
        let reports = try await DeadlockDetectorTrait.collectReports(mode: .report, stuckWaitThreshold: .seconds(60)) {
            try await withDeadline(20) {
                let other = Task {
                    try await client.withConnection { _ in
                        holding.open()
                        try await release.wait()
                        released.withLock { $0 = Date() }
                    }
                }
                try await holding.wait()
                let value = try await client.withTransaction { _ in
                    // Both connections are leased now: this lease waits for the other task's.
                    Task {
                        try await Task.sleep(for: .milliseconds(300))
                        release.open()
                    }
                    return try await client.query("SELECT 7").first?.decode(Int.self, at: 0)
                }
                #expect(value == 7)
                try await other.value
            }
        }
        let report = try #require(reports.first { $0.pattern == .nestedPoolLease })
        #expect(!report.thrown)
        let releasedAt = try #require(released.value)
        #expect(report.detectedAt < releasedAt)
        await client.shutdown()
    }

    @Test(
        "pattern 4: two tasks leasing from two pools in opposite orders are a cycle, reported with both pools; throw mode frees one"
    )
    func poolsInOppositeOrders() async throws {
        let orders = try await makeClient("sb-orders", connections: 1)
        let stock = try await makeClient("sb-stock", connections: 1)
        // Both connections are open before the clock starts: under ThreadSanitizer beside the
        // whole suite, opening them once took most of the bound; what is measured is the report.
        #expect(try await orders.query("SELECT 1").count == 1)
        #expect(try await stock.query("SELECT 1").count == 1)
        let ordersHeld = Gate()
        let stockHeld = Gate()
        let start = ContinuousClock.now
        let (outcomes, reports) = try await withReports(mode: .throwError) {
            try await withDeadline(20) {
                try await withThrowingTaskGroup(of: String.self) { group in
                    group.addTask {
                        do {
                            return try await orders.withConnection { _ in
                                ordersHeld.open()
                                try await stockHeld.wait()
                                return try await stock.withConnection { _ in "orders then stock" }
                            }
                        } catch is DeadlockError {
                            return "refused"
                        }
                    }
                    group.addTask {
                        do {
                            return try await stock.withConnection { _ in
                                stockHeld.open()
                                try await ordersHeld.wait()
                                return try await orders.withConnection { _ in "stock then orders" }
                            }
                        } catch is DeadlockError {
                            return "refused"
                        }
                    }
                    return try await group.reduce(into: [String]()) { $0.append($1) }.sorted()
                }
            }
        }
        #expect(ContinuousClock.now - start < .seconds(10 * slowdown))
        #expect(outcomes == ["orders then stock", "refused"] || outcomes == ["refused", "stock then orders"])
        let cycle = try #require(reports.first { $0.pattern == .waitCycle })
        let waited = Set(cycle.chain.filter { $0.action == "waits for" }.map(\.object))
        #expect(waited == ["connection pool 'sb-orders' (1 connection)", "connection pool 'sb-stock' (1 connection)"])
        #expect(cycle.advice.contains("one order"))
        await orders.shutdown()
        await stock.shutdown()
    }

    @Test(
        "pattern 8: a lease that waits while no connection comes back is reported as stuck, naming the holder and where it leased"
    )
    func stuckLease() async throws {
        let client = try await makeClient("sb-stuck", connections: 1)
        // The connection is open before the detector looks: opening one is not what is measured.
        #expect(try await client.query("SELECT 1").count == 1)
        let held = Gate()
        let release = Gate()
        let holderLine = #line + 8
        let reports = try await DeadlockDetectorTrait.collectReports(
            mode: .throwError,
            stuckWaitThreshold: .milliseconds(200 * slowdown)
        ) {
            try await withDeadline(30) {
                let holder = Task {
                    // Holds the only connection without waiting for SyncBridge.
                    try await client.withConnection { _ in
                        held.open()
                        try await release.wait()
                    }
                }
                try await held.wait()
                Task {
                    try await Task.sleep(for: .milliseconds(1000 * slowdown))
                    release.open()
                }
                #expect(try await client.query("SELECT 3").first?.decode(Int.self, at: 0) == 3)
                try await holder.value
            }
        }
        let stuck = try #require(reports.first { $0.pattern == .stuckWait })
        #expect(reports.count == 1 && !stuck.thrown)
        #expect(stuck.headline.contains("connection pool 'sb-stuck' (1 connection)"))
        #expect(
            stuck.chain.contains {
                $0.party.hasPrefix("  held by task")
                    && $0.callSite == "SyncBridgePostgresTests/PostgresDeadlockTests.swift:\(holderLine)"
            }
        )
        #expect(stuck.chain.contains { $0.action == "is running, not waiting for SyncBridge" })
        await client.shutdown()
    }

    @Test(
        "pattern 4: a Task {} started inside a lease inherits the lease record, so its lease from the same full pool is reported as nested; a Task.detached is not"
    )
    func inheritedLeaseRecord() async throws {
        let client = try await makeClient("sb-inherit", connections: 1)
        #expect(try await client.query("SELECT 1").count == 1)
        let childLine = #line + 6
        let reports = try await DeadlockDetectorTrait.collectReports(mode: .report, stuckWaitThreshold: .seconds(60)) {
            try await withDeadline(30) {
                // Nothing waits for the child: the outer lease ends once the child waits for it.
                let inherited = try await client.withConnection { _ in
                    let child = Task {
                        try await client.query("SELECT 2").first?.decode(Int.self, at: 0)
                    }
                    try await waitUntil(20) { client.pool.statistics.waiting == 1 }
                    return child
                }
                #expect(try await inherited.value == 2)
                // A detached task carries no lease record (it joins the test's report scope only).
                let scope = WatchdogScope.current
                let detached = try await client.withConnection { _ in
                    let child = Task.detached {
                        try await WatchdogScope.$current.withValue(scope) {
                            try await client.query("SELECT 3").first?.decode(Int.self, at: 0)
                        }
                    }
                    try await waitUntil(20) { client.pool.statistics.waiting == 1 }
                    return child
                }
                #expect(try await detached.value == 3)
            }
        }
        #expect(reports.count == 1, "\(reports)")
        let report = try #require(reports.first)
        #expect(report.pattern == .nestedPoolLease)
        #expect(report.chain.first?.callSite == "SyncBridgePostgresTests/PostgresDeadlockTests.swift:\(childLine)")
        await client.shutdown()
    }

    @Test(
        "pattern 8: a busy pool's queue is not stuck: leases that wait longer than the threshold are not reported while connections keep coming back",
        .enabled(
            if: slowdown == 1,
            "under ThreadSanitizer the whole suite starves hand-overs for seconds: no threshold tells slow from stuck"
        )
    )
    func busyPoolIsNotStuck() async throws {
        let client = try await makeClient("sb-busy", connections: 1)
        #expect(try await client.query("SELECT 1").count == 1)
        // Under ThreadSanitizer everything is slower, a hand-over most of all: twice the usual
        // factor, so that a slow hand-over is not taken for a stuck queue.
        let scale = slowdown > 1 ? 2 * slowdown : 1
        let threshold = Duration.milliseconds(200 * scale)
        let longestWait = Shared<Duration>(.zero)
        let reports = try await DeadlockDetectorTrait.collectReports(mode: .report, stuckWaitThreshold: threshold) {
            try await withDeadline(60) {
                // 8 tasks, 3 statements of 50 ms each, through one connection: a statement can
                // wait for 7 others, 350 ms, while the connection changes hands every 50 ms.
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for task in 0..<8 {
                        group.addTask {
                            var rows = 0
                            for _ in 0..<3 {
                                let start = ContinuousClock.now
                                rows += try await client.query("SELECT \(task), pg_sleep(\(0.05 * Double(scale)))")
                                    .count
                                let waited = ContinuousClock.now - start
                                longestWait.withLock { $0 = max($0, waited) }
                            }
                            return rows
                        }
                    }
                    let rows = try await group.reduce(0, +)
                    #expect(rows == 24)
                }
            }
        }
        #expect(longestWait.value > threshold, "no lease waited past the threshold: the test shows nothing")
        #expect(reports.isEmpty, "\(reports)")
        await client.shutdown()
    }

    @Test(
        "pattern 7: a deadlock victim (40P01) is retried and commits; a unique violation is thrown at once; lock timeouts stop after the last attempt"
    )
    func retries() async throws {
        let client = try await makeClient("sb-retry", connections: 4)
        let table = uniqueTable("retry")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (id INT PRIMARY KEY, v INT NOT NULL)")
        try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (1, 0), (2, 0)")
        let firstHolds = Gate()
        let secondHolds = Gate()
        let attempts = Shared<[String: Int]>([:])
        let policy = RetryPolicy(maximumAttempts: 3, initialBackoff: .milliseconds(5))
        try await withDeadline(60) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (name, first, second, mine, theirs) in [
                    ("a", 1, 2, firstHolds, secondHolds), ("b", 2, 1, secondHolds, firstHolds),
                ] {
                    group.addTask {
                        try await withRetry(policy) { attempt in
                            attempts.withLock { $0[name] = attempt }
                            try await client.withTransaction { tx in
                                try await tx.execute("UPDATE \(unsafeSQL: table) SET v = v + 1 WHERE id = \(first)")
                                if attempt == 1 {
                                    mine.open()
                                    try await theirs.wait()
                                }
                                try await tx.execute("UPDATE \(unsafeSQL: table) SET v = v + 10 WHERE id = \(second)")
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        // The server chose a victim, which ran again; both transactions committed exactly once.
        // (A retried transaction can collide with the other's first attempt once more, and then
        // that one is the victim: each runs at most the policy's three attempts.)
        #expect(
            attempts.value.count == 2 && attempts.value.values.contains { $0 >= 2 }
                && attempts.value.values.allSatisfy { $0 <= 3 }
        )
        let values = try await client.query("SELECT v FROM \(unsafeSQL: table) ORDER BY id").map {
            try $0.decode(Int.self, at: 0)
        }
        #expect(values == [11, 11])

        // Not retryable: thrown after one attempt.
        let uniqueAttempts = Shared(0)
        let duplicate = try await #require(throws: PostgresError.self) {
            try await withRetry(policy) { attempt in
                uniqueAttempts.withLock { $0 = attempt }
                try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (1, 0)")
            }
        }
        #expect(duplicate.isUniqueViolation && uniqueAttempts.value == 1)

        // Transient every time (a row another connection keeps locked): three attempts, then the
        // server's error as it came.
        let lockAttempts = Shared(0)
        try await client.withTransaction { holder in
            try await holder.execute("SELECT * FROM \(unsafeSQL: table) WHERE id = 1 FOR UPDATE")
            let timeout = try await #require(throws: PostgresError.self) {
                try await withRetry(policy) { attempt in
                    lockAttempts.withLock { $0 = attempt }
                    try await client.withTransaction { tx in
                        try await tx.execute("SET LOCAL lock_timeout = '50ms'")
                        try await tx.execute("UPDATE \(unsafeSQL: table) SET v = 0 WHERE id = 1")
                    }
                }
            }
            #expect(timeout.sqlState == "55P03" && timeout.isTransient)
        }
        #expect(lockAttempts.value == 3)
        await client.shutdown()
    }

    /// Runs `body` under a detector and returns its result and reports.
    func withReports<T: Sendable>(
        mode: DeadlockDetector.Mode,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> (T, [DeadlockReport]) {
        let result = Shared<T?>(nil)
        let reports = try await DeadlockDetectorTrait.collectReports(mode: mode, stuckWaitThreshold: .seconds(60)) {
            let value = try await body()
            result.withLock { $0 = value }
        }
        return (try #require(result.value), reports)
    }
}

/// A lease must not last past the stuck-wait threshold for a reason of the machine's: beside the
/// whole suite, a task that holds a connection can wait a second or more for a cooperative thread.
@Suite("PostgreSQL pools and the deadlock detector: a busy pool", .enabled(if: timedTestsEnabled, timedTestsNote))
struct TimedPostgresBusyPoolTests {
    @Test(
        "pattern 8: exclusive leases handed from task to task are not stuck: every hand-off is a release, though the connection never goes back to idle"
    )
    func busyExclusivePoolIsNotStuck() async throws {
        let client = try await PostgresDeadlockTests().makeClient("sb-busy-exclusive", connections: 1)
        #expect(try await client.query("SELECT 1").count == 1)
        // Each lease lasts 50 ms, far below the threshold even on a loaded machine; the last of
        // 40 tasks waits for the 39 others, about 2 s, far above it.
        let threshold = Duration.seconds(1 * slowdown)
        let longestWait = Shared<Duration>(.zero)
        let reports = try await DeadlockDetectorTrait.collectReports(mode: .report, stuckWaitThreshold: threshold) {
            try await withDeadline(120) {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for task in 0..<40 {
                        group.addTask {
                            let start = ContinuousClock.now
                            let rows = try await client.withConnection { connection in
                                try await connection.query("SELECT \(task), pg_sleep(\(0.05 * Double(slowdown)))").count
                            }
                            let waited = ContinuousClock.now - start
                            longestWait.withLock { $0 = max($0, waited) }
                            return rows
                        }
                    }
                    let rows = try await group.reduce(0, +)
                    #expect(rows == 40)
                }
            }
        }
        #expect(longestWait.value > threshold, "no lease waited past the threshold: the test shows nothing")
        #expect(reports.isEmpty, "\(reports)")
        await client.shutdown()
    }
}
