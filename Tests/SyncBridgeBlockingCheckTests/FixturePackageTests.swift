import Foundation
import SyncBridgeBlockingCheck
import Testing

/// A fixture package, written to a temporary folder, with every case the check must tell apart.
@Suite("check-blocking over a fixture package")
struct FixturePackageTests {
    static let files: [String: String] = [
        "Sources/App/Handlers.swift": """
        import CLibPQ
        import Dispatch
        import Foundation
        import SyncBridge

        struct Handlers {
            let connection: OpaquePointer
            let pool: BlockingPool
            let store: LegacyStore

            func direct() async {
                _ = PQexec(connection, "SELECT 1")
            }

            func throughOneHelper() async throws {
                _ = try store.reserve(seat: 3)
            }

            func throughTwoHelpers() async throws {
                try store.audit()
            }

            func wrapped() async throws {
                let store = self.store
                _ = try await pool.run { try store.reserve(seat: 1) }
            }

            func awaitsAnAsyncFunction() async throws {
                try await store.refresh()
            }

            func suppressed() async throws {
                _ = try store.reserve(seat: 2)  // check-blocking: allow start-up, once, before serving
            }

            func suppressedWithoutReason() async throws {
                // check-blocking: allow
                _ = try store.reserve(seat: 4)
            }

            func startsATask() {
                Task {
                    Thread.sleep(forTimeInterval: 0.1)
                }
                _ = try? store.reserve(seat: 5)  // synchronous code: not an async context
            }

            func marked() async throws {
                _ = try legacyFetch(7)
            }

            func configured() async {
                flushLegacyLog()
            }

            func fansOut() async {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { usleep(5) }
                }
            }

            func dispatches() async {
                DispatchQueue.global().async { sleep(1) }
                DispatchQueue.main.sync {}
            }

            func callsAClosureNamedSleep() async {
                let sleep = { (seconds: Int) in seconds * 1000 }
                _ = sleep(30)
            }
        }

        func legacyFetch(_ id: Int) throws -> Int {
            try Blocking.call("legacyFetch") { id }
        }

        func flushLegacyLog() {}
        """,
        "Sources/App/LegacyStore.swift": """
        import CLibPQ
        import Dispatch

        final class LegacyStore: Sendable {
            let connection: OpaquePointer
            private let gate = DispatchSemaphore(value: 1)

            func reserve(seat: Int) throws -> Int {
                _ = PQexecParams(connection, "UPDATE seats SET taken = true WHERE id = $1", 1, nil, nil, nil, nil, 0)
                return seat
            }

            func audit() throws {
                try Auditor(store: self).run()
            }

            func refresh() async throws {
                gate.wait()
            }
        }
        """,
        "Sources/App/Auditor.swift": """
        struct Auditor {
            let store: LegacyStore

            func run() throws {
                _ = try store.reserve(seat: 0)
            }
        }
        """,
        "Sources/App/Counter.swift": """
        import Glibc

        actor Counter {
            var value = 0

            func increment() {
                usleep(1000)
                value += 1
            }

            nonisolated func describe() -> String {
                usleep(10)
                return "counter"
            }
        }
        """,
        ".build/checkouts/Ignored.swift": """
        func ignored() async { sleep(1) }
        """,
    ]

    /// Writes the fixture to a new temporary folder.
    static func writeFixture() throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("check-blocking-\(UUID())").path
        for (path, source) in files {
            let url = URL(fileURLWithPath: root).appendingPathComponent(path)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(),
                withIntermediateDirectories: true
            )
            try source.write(to: url, atomically: true, encoding: .utf8)
        }
        try #"{"blocking": ["flushLegacyLog"]}"#.write(
            toFile: root + "/.check-blocking.json",
            atomically: true,
            encoding: .utf8
        )
        return root
    }

    @Test(
        "finds each path, direct and through helpers across files, with its chain; not the wrapped, awaited, synchronous or suppressed calls"
    )
    func exactFindings() async throws {
        let root = try Self.writeFixture()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let configuration = try CheckRun.configuration(at: root + "/.check-blocking.json")
        let report = try await runCheck(paths: [root], root: root, configuration: configuration, baseline: nil)

        #expect(report.fileCount == 4, "the .build folder is not read")
        let handlers = "Sources/App/Handlers.swift"
        let found = report.findings.map { "\($0.location.file):\($0.location.line): \($0.path)" }
        #expect(
            found == [
                "Sources/App/Counter.swift:7: Counter.increment() → usleep",
                "\(handlers):12: Handlers.direct() → PQexec",
                "\(handlers):16: Handlers.throughOneHelper() → LegacyStore.reserve(seat:) → PQexecParams",
                "\(handlers):20: Handlers.throughTwoHelpers() → LegacyStore.audit() → Auditor.run() → LegacyStore.reserve(seat:) → PQexecParams",
                "\(handlers):38: Handlers.suppressedWithoutReason() → LegacyStore.reserve(seat:) → PQexecParams",
                "\(handlers):43: Task {} in Handlers.startsATask() → Thread.sleep",
                "\(handlers):49: Handlers.marked() → legacyFetch(_:) → Blocking.call(\"legacyFetch\")",
                "\(handlers):53: Handlers.configured() → flushLegacyLog",
                "\(handlers):58: addTask {} in Handlers.fansOut() → usleep",
                "\(handlers):64: Handlers.dispatches() → DispatchQueue.sync",
                // An async function that blocks is reported itself; awaiting it is not.
                "Sources/App/LegacyStore.swift:18: LegacyStore.refresh() → DispatchSemaphore.wait",
            ]
        )
        // Each hop is located where it is called.
        let twoLevels = try #require(report.findings.first { $0.context == "Handlers.throughTwoHelpers()" })
        #expect(
            twoLevels.chain.map(\.location.description) == [
                "\(handlers):20:19", "Sources/App/LegacyStore.swift:14:34", "Sources/App/Auditor.swift:5:23",
                "Sources/App/LegacyStore.swift:9:13",
            ]
        )
        #expect(twoLevels.category == .databaseClient)
        #expect(twoLevels.fix.contains("LegacyStore.audit()"))
        // A suppression without a reason suppresses nothing, and says so.
        let unexplained = try #require(report.findings.first { $0.context == "Handlers.suppressedWithoutReason()" })
        #expect(
            unexplained.notes == [
                "the `check-blocking: allow` comment at \(handlers):37 gives no reason, so it suppresses nothing"
            ]
        )
        // The suppressed finding is listed apart, with its reason.
        #expect(report.suppressed.map(\.context) == ["Handlers.suppressed()"])
        #expect(report.suppressed.first?.suppressedBecause == "start-up, once, before serving")
    }

    @Test("a baseline turns its findings into expected ones and names the entries that no longer match")
    func baseline() async throws {
        let root = try Self.writeFixture()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let baselineFile = root + "/baseline.json"
        try #"""
        {"findings": [
            {"file": "Sources/App/Handlers.swift", "path": "Handlers.direct() → PQexec"},
            {"file": "Sources/App/Handlers.swift", "path": "Handlers.gone() → PQexec"}
        ]}
        """#.write(toFile: baselineFile, atomically: true, encoding: .utf8)
        let report = try await runCheck(
            paths: [root + "/Sources"],
            root: root,
            configuration: CheckConfiguration(),
            baseline: try CheckRun.baseline(at: baselineFile)
        )
        #expect(report.expected.map(\.path) == ["Handlers.direct() → PQexec"])
        #expect(report.stale.map(\.path) == ["Handlers.gone() → PQexec"])
        #expect(!report.findings.contains { $0.path == "Handlers.direct() → PQexec" })
        #expect(report.failsStrictMode)
        #expect(
            report.text().contains("the baseline expects a finding the check no longer makes: Handlers.gone() → PQexec")
        )
        // Without the configuration, flushLegacyLog is not known to block.
        #expect(!report.findings.contains { $0.blockingCall == "flushLegacyLog" })
    }

    @Test("the JSON report carries each finding's file, line, chain and fix, and serves as a baseline")
    func jsonReport() async throws {
        let root = try Self.writeFixture()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let report = try await runCheck(paths: [root], root: root, configuration: CheckConfiguration(), baseline: nil)
        let json = try report.json()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let findings = try #require(object["findings"] as? [[String: Any]])
        #expect(findings.count == report.findings.count)
        let first = try #require(findings.first)
        #expect(first["file"] as? String == "Sources/App/Counter.swift")
        #expect(first["line"] as? Int == 7)
        #expect(first["blockingCall"] as? String == "usleep")
        #expect(first["category"] as? String == "sleep")
        #expect((first["fix"] as? String)?.contains("Task.sleep") == true)

        let baselineFile = root + "/report.json"
        try json.write(toFile: baselineFile, atomically: true, encoding: .utf8)
        let again = try await runCheck(
            paths: [root],
            root: root,
            configuration: CheckConfiguration(),
            baseline: try CheckRun.baseline(at: baselineFile)
        )
        #expect(again.findings.isEmpty && again.stale.isEmpty && again.expected.count == report.findings.count)
    }

    @Test("a configuration with an unknown key or a malformed entry is refused with what is wrong")
    func badConfiguration() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("check-blocking-\(UUID())").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = root + "/.check-blocking.json"

        try #"{"blockng": ["x"]}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let unknown = #expect(throws: CheckError.self) { try CheckRun.configuration(at: file) }
        #expect(
            unknown?.description
                == "invalid configuration: \(file): unknown key \"blockng\"; the keys are \"blocking\", \"offloading\", \"exclude\""
        )

        try #"{"blocking": ["ok", "a.b.c"]}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let malformed = #expect(throws: CheckError.self) { try CheckRun.configuration(at: file) }
        #expect(
            malformed?.description
                == "invalid configuration: \(file): blocking entry 1 \"a.b.c\" is none of \"function\", \"Type.method\", \"*.method\""
        )

        let missing = await #expect(throws: CheckError.self) {
            try await runCheck(
                paths: [root + "/nowhere"],
                root: root,
                configuration: CheckConfiguration(),
                baseline: nil
            )
        }
        #expect(missing == .unreadable(path: root + "/nowhere", reason: "no such file or folder"))
    }
}
