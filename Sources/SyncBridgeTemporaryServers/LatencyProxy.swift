import Foundation
import SyncBridge
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A loopback TCP proxy that delays everything it forwards by a set time in each direction: a
/// database on this machine made to look `delay × 2` of round trip away, as a server in another
/// zone is (this is what `netem` would do, for kernels without it).
///
/// ```swift
/// let server = try await TemporaryPostgres.shared()
/// let proxy = try LatencyProxy(forwardingTo: server.port, delay: .milliseconds(1))
/// defer { proxy.stop() }
/// let client = PostgresClient(connectionString: "host=127.0.0.1 port=\(proxy.port) …")
/// ```
///
/// Data is delayed, not throttled: the proxy keeps reading while earlier bytes wait for their
/// time, so that a pipeline of statements costs one round trip, as on a real network. Each
/// connection is relayed by four threads of its own (a reader and a writer per direction).
/// Meant for tests and benchmarks, not for production traffic.
public final class LatencyProxy: Sendable {
    /// The port clients connect to, on 127.0.0.1.
    public let port: Int
    /// The delay added to each direction.
    public let delay: Duration
    private let upstreamPort: Int
    private let listener: Int32
    private let stopped = Atomic(false)

    /// Starts forwarding 127.0.0.1:`port` (a free port) to 127.0.0.1:`upstreamPort`, delaying
    /// each direction by `delay`.
    ///
    /// - Throws: `POSIXError` when the listening socket cannot be set up.
    public init(forwardingTo upstreamPort: Int, delay: Duration) throws {
        self.upstreamPort = upstreamPort
        self.delay = delay
        (listener, port) = try LoopbackTCP.makeListener()
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "latency-proxy"
        thread.start()
    }

    /// Stops accepting; open connections end at their next read (within about 20 ms).
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            guard let server = LoopbackTCP.makeConnection(to: upstreamPort) else {
                close(client)
                continue
            }
            var noDelay: Int32 = 1
            for socket in [client, server] {
                setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
            }
            let link = Link(sockets: [client, server])
            for (from, to) in [(client, server), (server, client)] {
                let queue = DelayQueue()
                let reader = Thread { [self] in
                    receive(from: from, into: queue)
                    link.threadFinished()
                }
                let writer = Thread { [self] in
                    send(queue, to: to)
                    link.threadFinished()
                }
                reader.name = "latency-proxy-read"
                writer.name = "latency-proxy-write"
                reader.start()
                writer.start()
            }
        }
    }

    /// Reads what arrives and queues it for its time; queues the end when the peer closes.
    private func receive(from source: Int32, into queue: DelayQueue) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let delayNanoseconds =
            UInt64(delay.components.seconds) * 1_000_000_000
            + UInt64(delay.components.attoseconds / 1_000_000_000)
        while !stopped.load(ordering: .relaxed) {
            var descriptor = pollfd(fd: source, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 20) > 0 else { continue }
            let count = read(source, &buffer, buffer.count)
            guard count > 0 else { break }
            queue.push(Array(buffer[0..<count]), due: monotonicNanoseconds() + delayNanoseconds)
        }
        queue.push(nil, due: 0)
    }

    /// Writes each queued chunk when its time comes; shuts the socket's sending side at the end.
    private func send(_ queue: DelayQueue, to destination: Int32) {
        while let chunk = queue.popWhenDue() {
            var written = 0
            while written < chunk.count {
                let result = chunk.withUnsafeBytes {
                    write(destination, $0.baseAddress! + written, chunk.count - written)
                }
                guard result > 0 else {
                    queue.drain()
                    return
                }
                written += result
            }
        }
        shutdown(destination, Int32(SHUT_WR))
    }
}

/// One proxied connection: the last of its four threads closes both sockets.
private final class Link: Sendable {
    private let sockets: [Int32]
    private let finished = Atomic(0)

    init(sockets: [Int32]) {
        self.sockets = sockets
    }

    func threadFinished() {
        guard finished.add(1, ordering: .acquiringAndReleasing).newValue == 4 else { return }
        for socket in sockets { close(socket) }
    }
}

/// Chunks waiting for their time, in order; `nil` marks the end of the stream.
private final class DelayQueue: Sendable {
    private struct State {
        var chunks: [(bytes: [UInt8]?, due: UInt64)] = []
        var head = 0
    }

    // Safe: every access to the state is under the condition's lock.
    private nonisolated(unsafe) var state = State()
    private let condition = NSCondition()

    func push(_ bytes: [UInt8]?, due: UInt64) {
        condition.lock()
        state.chunks.append((bytes, due))
        condition.signal()
        condition.unlock()
    }

    /// Waits for the next chunk and for its time; `nil` at the end of the stream.
    func popWhenDue() -> [UInt8]? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            guard state.head < state.chunks.count else {
                condition.wait()
                continue
            }
            let (bytes, due) = state.chunks[state.head]
            let now = monotonicNanoseconds()
            if due > now {
                _ = condition.wait(until: Date(timeIntervalSinceNow: Double(due - now) / 1e9))
                continue
            }
            state.head += 1
            if state.head > 1024 {
                state.chunks.removeFirst(state.head)
                state.head = 0
            }
            return bytes
        }
    }

    /// Drops what is queued (the destination closed) until the end of the stream.
    func drain() {
        while popWhenDue() != nil {}
    }
}
