import Foundation
import Glibc

/// A plain TCP connection to 127.0.0.1 that sends exactly what a test tells it, for clients that
/// connect and then stall. One thread at a time uses a connection (hence unchecked).
final class RawConnection: @unchecked Sendable {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CLIFailure("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw CLIFailure("connect to \(port): errno \(errno)")
        }
    }

    deinit { close(fd) }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// When this connection was opened, and when the peer was seen closing it (nil while open).
    let openedAt = Date()
    private(set) var closedAt: Date?

    /// Waits until the peer closed `count` of these connections (all by default; end of file or
    /// reset; anything it sends first is read and dropped) or `timeout` passed; returns how many
    /// are closed. Each closed connection's `closedAt` says when that was seen.
    @discardableResult
    static func waitUntilClosed(_ connections: [RawConnection], count: Int? = nil, timeout: TimeInterval) -> Int {
        let wanted = count ?? connections.count
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        func closed() -> Int { connections.reduce(0) { $0 + ($1.closedAt == nil ? 0 : 1) } }
        while closed() < wanted, Date() < deadline {
            let open = connections.filter { $0.closedAt == nil }
            var polled = open.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            guard poll(&polled, nfds_t(polled.count), 20) > 0 else { continue }
            let now = Date()
            for (connection, entry) in zip(open, polled) where entry.revents != 0 {
                let received = recv(entry.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if received == 0 || (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { connection.closedAt = now }
            }
        }
        return closed()
    }

    /// How many of these connections are still open, checked once without waiting.
    static func stillOpen(_ connections: [RawConnection]) -> Int {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let open = connections.filter { $0.closedAt == nil }
        var polled = open.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        _ = poll(&polled, nfds_t(polled.count), 0)
        let now = Date()
        for (connection, entry) in zip(open, polled) where entry.revents != 0 {
            let received = recv(entry.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if received == 0 || (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { connection.closedAt = now }
        }
        return connections.reduce(0) { $0 + ($1.closedAt == nil ? 1 : 0) }
    }

    /// True if the peer has closed this connection, checked without waiting.
    var isClosed: Bool { Self.waitUntilClosed([self], timeout: 0.01) == 1 }
}

/// Open file descriptors of a process (Linux).
func openDescriptors(_ pid: Int32) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
}
