import Foundation
import SharedTestSupport
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

@Suite("MariaDB pools and the deadlock detector; transaction retries")
struct MariaDBDeadlockTests {
    func makeClient(connections: Int) async throws -> MariaDBClient {
        var poolConfiguration = ConnectionPoolConfiguration()
        poolConfiguration.maximumConnections = connections
        poolConfiguration.acquireTimeout = .seconds(30)
        return MariaDBClient(configuration: try await testConfiguration(), poolConfiguration: poolConfiguration)
    }

    @Test(
        "pattern 4: a second lease from a full pool inside a transaction throws at once in throw mode, naming both lease sites"
    )
    func nestedLease() async throws {
        let client = try await makeClient(connections: 1)
        // The connection is open before the clock starts: what is measured is the report.
        #expect(try await client.query("SELECT 1").count == 1)
        // From the nested lease's start: the BEGIN before it may queue behind the rest of the
        // suite on a loaded machine, the detector's answer may not.
        let innerStart = Locked<ContinuousClock.Instant?>(nil)
        let outer = #line + 8
        let inner = #line + 9
        let reports = try await DeadlockDetectorTrait.collectReports(
            mode: .throwError,
            stuckWaitThreshold: .seconds(60)
        ) {
            do {
                _ = try await withDeadline(20) {
                    try await client.withTransaction { _ in
                        innerStart.withLock { $0 = .now }
                        try await client.insert("INSERT INTO nowhere VALUES (1)")
                    }
                }
                Issue.record("the nested lease did not throw")
            } catch let error as DeadlockError {
                #expect(error.report.pattern == .nestedPoolLease)
            }
        }
        let started = try #require(innerStart.current)
        #expect(ContinuousClock.now - started < .seconds(10 * slowdown))
        let report = try #require(reports.first)
        #expect(reports.count == 1 && report.thrown)
        #expect(
            report.chain.compactMap(\.callSite)
                == [
                    "SyncBridgeMariaDBTests/MariaDBDeadlockTests.swift:\(inner)",
                    "SyncBridgeMariaDBTests/MariaDBDeadlockTests.swift:\(outer)",
                ]
        )
        #expect(try await client.query("SELECT 6 * 7").first?.decode(Int.self, at: 0) == 42)
        await client.shutdown()
    }

    @Test("pattern 7: the deadlock victim (1213) is retried and commits; both transactions apply exactly once")
    func deadlockRetry() async throws {
        let client = try await makeClient(connections: 4)
        let table = uniqueTable("retry")
        try await client.execute("CREATE TABLE \(unsafeSQL: table) (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
        try await client.execute("INSERT INTO \(unsafeSQL: table) VALUES (1, 0), (2, 0)")
        let firstHolds = Gate()
        let secondHolds = Gate()
        let attempts = Shared<[String: Int]>([:])
        let errors = Shared<[String]>([])
        let policy = RetryPolicy(maximumAttempts: 3, initialBackoff: .milliseconds(5)) { error in
            let retryable = RetryPolicy.isTransientServerError(error)
            errors.withLock { $0.append("\(retryable): \(error)") }
            return retryable
        }
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
        // The server chose a victim, which ran again (a retry may collide once more with the other
        // transaction's first attempt); every error was a retryable 1213, one per retry.
        #expect(
            attempts.value.count == 2 && attempts.value.values.contains { $0 >= 2 }
                && attempts.value.values.allSatisfy { $0 <= 3 }
        )
        #expect(errors.value.count == attempts.value.values.reduce(0) { $0 + $1 - 1 }, "\(errors.value)")
        #expect(errors.value.allSatisfy { $0.hasPrefix("true") && $0.contains("1213") }, "\(errors.value)")
        let values = try await client.query("SELECT v FROM \(unsafeSQL: table) ORDER BY id").map {
            try $0.decode(Int.self, at: 0)
        }
        #expect(values == [11, 11])
        await client.shutdown()
    }
}
