import Foundation
import Glibc
import Synchronization

/// A TCP proxy on 127.0.0.1 that freezes the first connection whose client sends `trigger`: from
/// then on nothing more of it is relayed either way and the server's side stays open, as with a
/// server process frozen at that point or a network path gone dead. Other connections are relayed.
final class FreezingProxy: Sendable {
    let port: Int
    private let listener: Int32
    private let upstreamPort: Int
    private let trigger: [UInt8]
    /// Whether a connection was frozen (only one ever is), and the connections open, to end them at `stop()`.
    private let state = Mutex((froze: false, links: [Link]()))

    var froze: Bool { state.withLock { $0.froze } }

    init(upstreamPort: Int, freezingOnce trigger: String) throws {
        self.upstreamPort = upstreamPort
        self.trigger = Array(trigger.utf8)
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = SlowProxy.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 64) == 0 else {
            close(listener)
            throw CLIFailure("proxy bind failed: errno \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    /// Ends every connection, the frozen one too, and stops accepting. Sockets are shut down here and
    /// closed once both their relays have ended, so that none is used after its number is reused.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        state.withLock { state in
            for link in state.links {
                shutdown(link.client, Int32(SHUT_RDWR))
                shutdown(link.upstream, Int32(SHUT_RDWR))
            }
        }
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else {
                if errno == EINTR { continue }
                break
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = SlowProxy.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { close(client); close(upstream); continue }
            let link = Link(client: client, upstream: upstream)
            state.withLock { $0.links.append(link) }
            Thread { [self] in relay(link, fromClient: true) }.start()
            Thread { [self] in relay(link, fromClient: false) }.start()
        }
        close(listener)
    }

    private func relay(_ link: Link, fromClient: Bool) {
        let (source, destination) = fromClient ? (link.client, link.upstream) : (link.upstream, link.client)
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = read(source, &buffer, buffer.count)
            if count <= 0 { break }
            if fromClient, buffer[..<count].contains(trigger), state.withLock({ state in
                defer { state.froze = true }
                return !state.froze
            }) {
                link.freeze()
            }
            // Frozen: read and dropped, so neither side learns anything, until `stop()`.
            if link.frozen { continue }
            var offset = 0
            while offset < count {
                let written = buffer[offset..<count].withUnsafeBytes { send(destination, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if written <= 0 { break }
                offset += written
            }
        }
        if !link.frozen { shutdown(destination, Int32(SHUT_WR)) }
        state.withLock { state in
            guard link.relayEnded() else { return }
            state.links.removeAll { $0 === link }
            close(link.client)
            close(link.upstream)
        }
    }

    /// One client connection and its upstream.
    private final class Link: Sendable {
        let client: Int32, upstream: Int32
        private let state = Mutex((frozen: false, relays: 2))

        init(client: Int32, upstream: Int32) { (self.client, self.upstream) = (client, upstream) }

        var frozen: Bool { state.withLock { $0.frozen } }

        func freeze() { state.withLock { $0.frozen = true } }

        /// True for the second of its two relays to end.
        func relayEnded() -> Bool { state.withLock { $0.relays -= 1; return $0.relays == 0 } }
    }
}
