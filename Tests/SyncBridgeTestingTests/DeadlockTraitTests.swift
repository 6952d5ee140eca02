import Foundation
import SyncBridge
import SyncBridgeTesting
import Testing

@Suite("The deadlock detector trait")
struct DeadlockTraitTests {
    @Test(
        "a test whose tasks take two AsyncMutexes in one order passes under the trait",
        // Under ThreadSanitizer a busy run can leave a task unscheduled for longer than the
        // default 5 s stuck-wait threshold.
        .deadlockDetector(mode: .throwError, stuckWaitThreshold: .seconds(5 * slowdown))
    )
    func oneOrderPasses() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let accounts = AsyncMutex(100, lockClass: "trait-accounts-\(suffix)")
        let ledger = AsyncMutex([Int](), lockClass: "trait-ledger-\(suffix)")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for amount in 1...20 {
                group.addTask {
                    try await accounts.withLock { balance in
                        try await ledger.withLock { entries in
                            balance -= amount
                            entries.append(amount)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await accounts.withLock { $0 } == 100 - 210)
        #expect(try await ledger.withLock { $0.count } == 20)
    }

    @Test("a test whose tasks deadlock on two AsyncMutexes fails with the cycle, and does not hang in throw mode")
    func cycleFails() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let trait = DeadlockDetectorTrait.deadlockDetector(
            mode: .throwError,
            stuckWaitThreshold: .seconds(5 * slowdown)
        )
        let left = AsyncMutex(0, lockClass: "trait-left-\(suffix)")
        let right = AsyncMutex(0, lockClass: "trait-right-\(suffix)")
        let seen = Locked<[String]>([])
        try await withKnownIssue {
            try await trait.provideScope(for: Test.current!, testCase: Test.Case.current) {
                let (leftHeld, leftSignal) = AsyncStream<Void>.makeStream()
                let (rightHeld, rightSignal) = AsyncStream<Void>.makeStream()
                await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        try await left.withLock { _ in
                            leftSignal.finish()
                            for await _ in rightHeld {}
                            try await right.withLock { _ in }
                        }
                    }
                    group.addTask {
                        try await right.withLock { _ in
                            rightSignal.finish()
                            for await _ in leftHeld {}
                            try await left.withLock { _ in }
                        }
                    }
                    // The wait that closes the cycle throws DeadlockError; the other completes.
                    var refused = 0
                    while let result = await group.nextResult() {
                        if case .failure(let error) = result, error is DeadlockError { refused += 1 }
                    }
                    #expect(refused == 1)
                }
            }
        } matching: { issue in
            let comments = issue.comments.map(\.rawValue)
            seen.withLock { $0 += comments }
            return comments.contains { $0.hasPrefix("DEADLOCK (") && $0.contains("trait-left-\(suffix)") }
        }
        // The cycle itself, and the two orders as an inversion.
        let comments = seen.withLock { $0 }
        #expect(comments.contains { $0.hasPrefix("DEADLOCK (wait-cycle)") })
        #expect(comments.contains { $0.hasPrefix("DEADLOCK (lock-order-inversion)") })
    }
}
