import CSyncBridgeShims
import DequeModule
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
/// time, so that a pipeline of statements costs one round trip, as on a real network. One thread
/// relays every connection: it waits on all their sockets and on a timer for the next bytes due
/// (epoll and a timerfd, to the nanosecond), so that the proxy itself takes little of the CPU
/// that the client and the server it stands between need. Meant for tests and benchmarks, not for
/// production traffic.
public final class LatencyProxy: Sendable {
    /// The port clients connect to, on 127.0.0.1.
    public let port: Int
    /// The delay added to each direction.
    public let delay: Duration
    private let listener: Int32
    private let wakeUp: Int32
    private let stopped = Atomic(false)

    /// Starts forwarding 127.0.0.1:`port` (a free port) to 127.0.0.1:`upstreamPort`, delaying
    /// each direction by `delay`.
    ///
    /// - Throws: `POSIXError` when the listening socket, the epoll set or the timer cannot be set
    ///   up.
    public init(forwardingTo upstreamPort: Int, delay: Duration) throws {
        self.delay = delay
        (listener, port) = try LoopbackTCP.makeListener()
        var wakeUp: Int32 = -1
        let events = sb_io_create(&wakeUp)
        let timer = sb_timer_create()
        guard events >= 0, timer >= 0 else {
            let code = POSIXErrorCode(rawValue: errno) ?? .EIO
            for descriptor in [listener, events, wakeUp, timer] where descriptor >= 0 { close(descriptor) }
            throw POSIXError(code)
        }
        self.wakeUp = wakeUp
        let relay = Relay(
            events: events,
            timer: timer,
            listener: listener,
            upstreamPort: upstreamPort,
            delay: UInt64(max(0, delay.nanosecondCount))
        )
        // The relay is used by its thread only, from here on.
        nonisolated(unsafe) let owned = relay
        let thread = Thread { [self] in owned.run(until: stopped) }
        thread.name = "latency-proxy"
        thread.start()
    }

    deinit {
        // After the thread (which holds the proxy) has ended: nothing wakes it any more.
        close(wakeUp)
    }

    /// Stops accepting and closes every connection it relays (at once: bytes still waiting for
    /// their time are dropped).
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        sb_io_wake(wakeUp)
    }
}

/// The proxy's thread: every relayed connection, the bytes waiting for their time, in the order
/// they are due.
private final class Relay {
    /// One direction of one connection: what is read from `source` is written to `destination`.
    final class Direction {
        let source: Int32
        let destination: Int32
        let link: Link
        /// Due bytes the destination did not take yet (its buffer was full), from `sent` on.
        var unsent: [UInt8] = []
        var sent = 0
        /// The source ended (or failed): no more reads.
        var sourceEnded = false
        /// The end is due: shut the destination's sending side once `unsent` is written.
        var endDue = false
        var shutDown = false

        init(from source: Int32, to destination: Int32, link: Link) {
            self.source = source
            self.destination = destination
            self.link = link
        }
    }

    /// One relayed connection: the client's socket and the server's.
    final class Link {
        var directions: [Direction] = []
        var closed = false
    }

    private static let wakeUpToken: UInt64 = 0
    private static let timerToken: UInt64 = 1
    private static let listenerToken: UInt64 = 2
    private static let firstSocketToken: UInt64 = 16

    private let events: Int32
    private let timer: Int32
    private let listener: Int32
    private let upstreamPort: Int
    private let delay: UInt64
    /// Bytes read and not yet due, in the order they are due (one delay for all: the order read).
    /// `nil` bytes: the source's end.
    private var queued: Deque<(due: UInt64, direction: Direction, bytes: [UInt8]?)> = []
    /// The timer's deadline, 0 when disarmed.
    private var armedFor: UInt64 = 0
    /// Each socket's directions: the one it is the source of, the one it is the destination of.
    private var sockets: [Int32: (reading: Direction, writing: Direction)] = [:]
    private var buffer = [UInt8](repeating: 0, count: 65536)

    init(events: Int32, timer: Int32, listener: Int32, upstreamPort: Int, delay: UInt64) {
        self.events = events
        self.timer = timer
        self.listener = listener
        self.upstreamPort = upstreamPort
        self.delay = delay
    }

    func run(until stopped: borrowing Atomic<Bool>) {
        _ = sb_io_arm(events, listener, Self.listenerToken, SB_IO_READABLE, 1)
        _ = sb_io_arm(events, timer, Self.timerToken, SB_IO_READABLE, 1)
        var tokens = [UInt64](repeating: 0, count: 64)
        var flags = [Int32](repeating: 0, count: 64)
        while !stopped.load(ordering: .relaxed) {
            let count = sb_io_wait(events, &tokens, &flags, 64, -1)
            if count < 0 { break }
            for index in 0..<Int(count) {
                switch tokens[index] {
                case Self.wakeUpToken:
                    continue  // stop(): the loop's condition says so
                case Self.timerToken:
                    armedFor = 0
                    _ = sb_io_arm(events, timer, Self.timerToken, SB_IO_READABLE, 0)
                case Self.listenerToken:
                    acceptClient()
                    _ = sb_io_arm(events, listener, Self.listenerToken, SB_IO_READABLE, 0)
                default:
                    let socket = Int32(tokens[index] - Self.firstSocketToken)
                    guard let directions = sockets[socket] else { continue }
                    let ready = flags[index]
                    if ready & (SB_IO_READABLE | SB_IO_FAILED) != 0, !directions.reading.sourceEnded {
                        readAvailable(directions.reading)
                    }
                    if ready & (SB_IO_WRITABLE | SB_IO_FAILED) != 0, !directions.writing.unsent.isEmpty {
                        flush(directions.writing)
                    }
                    if !directions.reading.link.closed { watch(socket) }
                }
            }
            deliverDueBytes()
        }
        while let (_, directions) = sockets.first { closeLink(directions.reading.link) }
        close(listener)
        close(timer)
        close(events)
    }

    private func acceptClient() {
        let client = accept(listener, nil, nil)
        guard client >= 0 else { return }
        guard let server = LoopbackTCP.makeConnection(to: upstreamPort) else {
            close(client)
            return
        }
        var noDelay: Int32 = 1
        for socket in [client, server] {
            setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
            _ = fcntl(socket, F_SETFL, fcntl(socket, F_GETFL) | O_NONBLOCK)
        }
        let link = Link()
        let upstream = Direction(from: client, to: server, link: link)
        let downstream = Direction(from: server, to: client, link: link)
        link.directions = [upstream, downstream]
        sockets[client] = (upstream, downstream)
        sockets[server] = (downstream, upstream)
        for socket in [client, server] {
            _ = sb_io_arm(events, socket, Self.firstSocketToken + UInt64(socket), SB_IO_READABLE, 1)
        }
    }

    /// Re-arms `socket` for what its directions still need: reading while its source is open,
    /// writing while due bytes wait for room.
    private func watch(_ socket: Int32) {
        guard let directions = sockets[socket] else { return }
        var interest: Int32 = 0
        if !directions.reading.sourceEnded { interest |= SB_IO_READABLE }
        if !directions.writing.unsent.isEmpty { interest |= SB_IO_WRITABLE }
        guard interest != 0 else { return }
        _ = sb_io_arm(events, socket, Self.firstSocketToken + UInt64(socket), interest, 0)
    }

    /// Reads what has arrived and queues it for its time; queues the end when the peer closes.
    private func readAvailable(_ direction: Direction) {
        while true {
            let count = buffer.withUnsafeMutableBytes { read(direction.source, $0.baseAddress, $0.count) }
            if count > 0 {
                queue(Array(buffer[0..<count]), for: direction)
                if count < buffer.count { return }
                continue
            }
            if count < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
            direction.sourceEnded = true
            queue(nil, for: direction)
            return
        }
    }

    private func queue(_ bytes: [UInt8]?, for direction: Direction) {
        queued.append((monotonicNanoseconds() &+ delay, direction, bytes))
    }

    /// Writes every queued chunk whose time has come, then sets the timer for the next one.
    private func deliverDueBytes() {
        let now = monotonicNanoseconds()
        while let head = queued.first, head.due <= now {
            let (_, direction, bytes) = queued.removeFirst()
            guard !direction.link.closed else { continue }
            if let bytes {
                direction.unsent.append(contentsOf: bytes)
            } else {
                direction.endDue = true
            }
            flush(direction)
            // The destination's buffer is full: wait until it takes more.
            if !direction.link.closed, !direction.unsent.isEmpty { watch(direction.destination) }
        }
        let next = queued.first?.due ?? 0
        if next != armedFor {
            armedFor = next
            _ = sb_timer_arm(timer, next)
        }
    }

    /// Writes what the destination takes; shuts its sending side once the end is due and
    /// written, and closes the link once both directions are shut or a write fails.
    private func flush(_ direction: Direction) {
        while !direction.unsent.isEmpty {
            let written = direction.unsent.withUnsafeBytes {
                send(
                    direction.destination,
                    $0.baseAddress! + direction.sent,
                    $0.count - direction.sent,
                    Int32(MSG_NOSIGNAL)
                )
            }
            if written > 0 {
                direction.sent += written
                if direction.sent == direction.unsent.count {
                    direction.unsent.removeAll(keepingCapacity: true)
                    direction.sent = 0
                }
                continue
            }
            if written < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
            closeLink(direction.link)
            return
        }
        if direction.endDue, !direction.shutDown {
            direction.shutDown = true
            shutdown(direction.destination, Int32(SHUT_WR))
            if direction.link.directions.allSatisfy(\.shutDown) { closeLink(direction.link) }
        }
    }

    private func closeLink(_ link: Link) {
        guard !link.closed else { return }
        link.closed = true
        for direction in link.directions {
            _ = sb_io_remove(events, direction.source)
            sockets[direction.source] = nil
            close(direction.source)
        }
        // Each direction holds its link: let go of them, or the three would keep one another.
        link.directions = []
    }
}
