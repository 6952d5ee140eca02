import Testing

@testable import SyncBridge

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

@Suite("IOThread")
struct IOThreadTests {
    /// Runs `body` on `thread` and returns what it returns.
    private func onThread<Value: Sendable>(
        _ thread: IOThread,
        _ body: @escaping @Sendable () -> Value
    ) async -> Value {
        await withCheckedContinuation { continuation in
            thread.execute { continuation.resume(returning: body()) }
        }
    }

    /// Runs `body` with an I/O thread that watches one end of a connected pair of stream sockets
    /// (not armed yet) and records its handler's reports, and apart the reports nobody armed
    /// for; the test writes to the other end.
    private func withWatchedSocket(
        _ body: (
            _ thread: IOThread, _ watched: Int32, _ token: UInt64, _ peer: Int32, _ reports: Recorder<IOReadiness>,
            _ unarmed: Recorder<IOReadiness>
        ) async throws -> Void
    ) async throws {
        var descriptors: [Int32] = [-1, -1]
        let result = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &descriptors)
        try #require(result == 0, "socketpair failed with errno \(errno)")
        let (watched, peer) = (descriptors[0], descriptors[1])
        let thread = IOThread(name: "sb-io-test")
        let (reports, unarmed) = (Recorder<IOReadiness>(), Recorder<IOReadiness>())
        let token = await onThread(thread) {
            thread.add(watched, handler: { reports.append($0) }, unarmed: { unarmed.append($0) })
        }
        defer {
            thread.shutdown()
            close(watched)
            close(peer)
        }
        try await body(thread, watched, token, peer, reports, unarmed)
        await onThread(thread) { thread.remove(token) }
    }

    private func send(_ byte: UInt8, to socket: Int32) {
        var byte = byte
        #expect(write(socket, &byte, 1) == 1)
    }

    @Test(
        "a socket's handler runs once per arm: a socket still readable is not reported again until re-armed (its owner is told once), and re-arming for the same interest reports the next data"
    )
    func oneReportPerArm() async throws {
        try await withWatchedSocket { thread, watched, token, peer, reports, unarmed in
            await onThread(thread) { thread.arm(token, for: .readable) }
            send(1, to: peer)
            try await waitUntil("the first byte was reported") { reports.all.count == 1 }
            // The byte stays unread, so the socket stays readable. Two more turns of the thread (each
            // ends in a wait on its sockets) report it nowhere: its handler has not asked again.
            await onThread(thread) {}
            await onThread(thread) {}
            #expect(reports.all.count == 1)
            // The socket was silenced at the first report nobody armed for, and its owner told once.
            #expect(unarmed.all.count == 1 && unarmed.all.first?.contains(.readable) == true)

            // Armed again (the socket was silenced in between), the unread byte is reported at once.
            await onThread(thread) { thread.arm(token, for: .readable) }
            try await waitUntil("the unread byte was reported again") { reports.all.count == 2 }

            // Read it, arm for the same interest (no new registration), and the next byte is reported.
            var buffer: UInt8 = 0
            #expect(read(watched, &buffer, 1) == 1)
            await onThread(thread) { thread.arm(token, for: .readable) }
            await onThread(thread) {}
            #expect(reports.all.count == 2)
            send(2, to: peer)
            try await waitUntil("the second byte was reported") { reports.all.count == 3 }
            #expect(reports.all.allSatisfy { $0.contains(.readable) })
            #expect(read(watched, &buffer, 1) == 1)
            #expect(buffer == 2)

            // A peer that hangs up while nobody is armed is reported to the next arm, once.
            #expect(shutdown(peer, Int32(SHUT_WR)) == 0)
            await onThread(thread) {}
            await onThread(thread) {}
            #expect(reports.all.count == 3)
            await onThread(thread) { thread.arm(token, for: .readable) }
            try await waitUntil("the hang-up was reported") { reports.all.count == 4 }
            await onThread(thread) {}
            await onThread(thread) {}
            #expect(reports.all.count == 4)
        }
    }

    @Test(
        "a socket armed with a deadline that passes is reported timed out, once, and data after it waits for the next arm"
    )
    func deadline() async throws {
        try await withWatchedSocket { thread, watched, token, peer, reports, _ in
            await onThread(thread) {
                thread.arm(token, for: .readable, deadline: monotonicNanoseconds() + 20_000_000)
            }
            try await waitUntil("the deadline was reported") { reports.all.count == 1 }
            #expect(reports.all == [.timedOut])

            send(1, to: peer)
            await onThread(thread) {}
            await onThread(thread) {}
            #expect(reports.all.count == 1)
            await onThread(thread) { thread.arm(token, for: .readable) }
            try await waitUntil("the byte was reported") { reports.all.count == 2 }
            #expect(reports.all.last?.contains(.readable) == true)
        }
    }
}
