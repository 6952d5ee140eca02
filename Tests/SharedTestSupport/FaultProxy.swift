import Foundation
import SyncBridge
import SyncBridgeTemporaryServers

/// A loopback TCP proxy for fault injection: it forwards between its clients and a server, and on
/// command stops forwarding without closing anything (what a network partition or a vanished host
/// looks like to both ends: a half-open connection), or resets every connection.
///
/// Each connection is relayed by two threads of its own, with blocking reads bounded by a short
/// poll, so that pausing takes effect at once.
public final class FaultProxy: Sendable {
    /// The port clients connect to, on 127.0.0.1.
    public let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let state = Locked(State())

    private struct State {
        var paused = false
        var stopped = false
        var links: [Link] = []
    }

    /// One proxied connection. Only its relay threads close its sockets (the last one to finish),
    /// so that no descriptor is closed while the other thread may still read it.
    private final class Link: Sendable {
        let client: Int32
        let server: Int32
        private let state = Locked((reset: false, finished: 0))

        init(client: Int32, server: Int32) {
            self.client = client
            self.server = server
        }

        var isReset: Bool { state.withLock { $0.reset } }

        func requestReset() { state.withLock { $0.reset = true } }

        /// A relay thread ends; the second one closes both sockets (with `RST` after a reset).
        func relayFinished() {
            let (last, reset) = state.withLock { state in
                state.finished += 1
                return (state.finished == 2, state.reset)
            }
            guard last else { return }
            for socket in [client, server] {
                if reset {
                    var linger = linger(l_onoff: 1, l_linger: 0)
                    setsockopt(socket, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
                }
                close(socket)
            }
        }
    }

    /// Starts forwarding 127.0.0.1:`port` (a free port) to 127.0.0.1:`upstreamPort`.
    public init(forwardingTo upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        (listener, port) = try LoopbackTCP.makeListener(backlog: 64)
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "fault-proxy"
        thread.start()
    }

    /// Stops forwarding in both directions, leaving every connection open: data sent by either
    /// end is neither delivered nor refused.
    public func pause() { state.withLock { $0.paused = true } }

    /// Forwards again.
    public func resume() { state.withLock { $0.paused = false } }

    /// Resets every connection (`RST` to both ends); new connections are still accepted.
    public func resetAll() {
        let links = state.withLock { state in
            defer { state.links = [] }
            return state.links
        }
        for link in links { link.requestReset() }
    }

    /// Stops accepting and resets every connection.
    public func stop() {
        state.withLock { $0.stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        resetAll()
    }

    private func acceptLoop() {
        while !state.withLock({ $0.stopped }) {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            guard let server = LoopbackTCP.makeConnection(to: upstreamPort) else {
                close(client)
                continue
            }
            let link = Link(client: client, server: server)
            state.withLock { $0.links.append(link) }
            for (from, to) in [(client, server), (server, client)] {
                let thread = Thread { [self] in
                    relay(from: from, to: to, link: link)
                    link.relayFinished()
                }
                thread.name = "fault-proxy-relay"
                thread.start()
            }
        }
    }

    private func relay(from source: Int32, to destination: Int32, link: Link) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !link.isReset {
            let paused = state.withLock { $0.paused }
            if paused {
                usleep(5000)
                continue
            }
            var descriptor = pollfd(fd: source, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 20) > 0 else { continue }
            // Paused while waiting: what arrived stays unread.
            if state.withLock({ $0.paused }) { continue }
            let count = read(source, &buffer, buffer.count)
            guard count > 0 else {
                shutdown(destination, Int32(SHUT_WR))
                return
            }
            var written = 0
            while written < count {
                let result = buffer.withUnsafeBytes { write(destination, $0.baseAddress! + written, count - written) }
                guard result > 0 else { return }
                written += result
            }
        }
    }
}
