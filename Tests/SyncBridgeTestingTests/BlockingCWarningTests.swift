import Foundation
import SyncBridge
import Testing

/// The repository's root, from this file's place in it.
private let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Type-checks `source` against SyncBridge's C modules (`CLibPQ`, `CMariaDB`) as a user's package
/// compiles it, in Swift 6 mode, and returns the compiler's diagnostics.
private func typecheck(_ source: String) throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sb-noasync-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let file = folder.appendingPathComponent("Legacy.swift")
    try source.write(to: file, atomically: true, encoding: .utf8)
    // The headers' folders, as the C modules' targets find them (pkg-config, as in Package.swift).
    let headers = try run("/usr/bin/env", ["pkg-config", "--cflags-only-I", "libpq", "libmariadb"])
        .split(separator: " ").map(String.init).filter { $0.hasPrefix("-I") }
    var arguments = ["swiftc", "-typecheck", "-swift-version", "6"]
    arguments += ["-I", packageRoot.appendingPathComponent("Sources/CLibPQ").path]
    arguments += ["-I", packageRoot.appendingPathComponent("Sources/CMariaDB").path]
    for header in headers { arguments += ["-Xcc", header.trimmingCharacters(in: .whitespacesAndNewlines)] }
    arguments.append(file.path)
    return try run("/usr/bin/env", arguments)
}

/// Runs a program; returns what it wrote to standard output and standard error.
private func run(_ executable: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

@Suite("The C modules flag a blocking C call made from an async context, at compile time")
struct BlockingCWarningTests {
    @Test(
        "libpq and Connector/C: a call in an async function is a warning naming the fix; a call in a synchronous function or closure is not"
    )
    func warnings() async throws {
        let source = """
            import CLibPQ
            import CMariaDB

            func legacyCount(_ conn: OpaquePointer) async { _ = PQexec(conn, "SELECT count(*) FROM stock") }
            func legacyReserve(_ mysql: UnsafeMutablePointer<MYSQL>) async { _ = mysql_query(mysql, "UPDATE stock") }
            func onItsThread(_ conn: OpaquePointer) { _ = PQexec(conn, "SELECT 1") }
            func inAClosure(_ conn: OpaquePointer) async {
                let body: () -> Void = { _ = PQexec(conn, "SELECT 1"); _ = PQstatus(conn) }
                body()
            }
            func accessors(_ conn: OpaquePointer) async { _ = PQstatus(conn); _ = PQsendQuery(conn, "SELECT 1") }
            """
        // The compiler runs for a while: its wait belongs on a thread that may block.
        let pool = BlockingPool(name: "sb-typecheck", threadCount: 1)
        let diagnostics = try await pool.run { _ in try typecheck(source) }
        await pool.shutdownGracefully()
        let flagged = diagnostics.split(separator: "\n").filter {
            $0.contains("Legacy.swift:") && $0.contains(": warning: ")
        }
        #expect(flagged.count == 2, "\(diagnostics)")
        #expect(!diagnostics.contains("error:"), "\(diagnostics)")
        let fix =
            "waits for the server and would block a thread of Swift's cooperative pool: call it inside withRawConnection { } or on a BlockingPool"
        #expect(
            flagged.contains {
                $0.contains("Legacy.swift:4:")
                    && $0.contains(
                        "global function 'PQexec' is unavailable from asynchronous contexts; \(fix), or use SyncBridgePostgres' async API"
                    )
            },
            "\(diagnostics)"
        )
        #expect(
            flagged.contains {
                $0.contains("Legacy.swift:5:")
                    && $0.contains(
                        "global function 'mysql_query' is unavailable from asynchronous contexts; \(fix), or use SyncBridgeMariaDB's async API"
                    )
            },
            "\(diagnostics)"
        )
    }
}
