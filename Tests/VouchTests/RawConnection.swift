import Foundation
import Glibc

/// A plain TCP connection to 127.0.0.1 that sends exactly what a test tells it, for clients that
/// connect and then stall.
final class RawConnection {
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

    /// Waits until the peer closed every connection (end of file or reset; anything it sends
    /// first is read and dropped) or `timeout` passed; returns how many were closed.
    static func waitUntilClosed(_ connections: [RawConnection], timeout: TimeInterval) -> Int {
        var open = Set(connections.indices)
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !open.isEmpty, Date() < deadline {
            var polled = open.map { pollfd(fd: connections[$0].fd, events: Int16(POLLIN), revents: 0) }
            let indices = Array(open)
            guard poll(&polled, nfds_t(polled.count), 50) > 0 else { continue }
            for (slot, entry) in polled.enumerated() where entry.revents != 0 {
                let received = recv(entry.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if received == 0 || (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { open.remove(indices[slot]) }
            }
        }
        return connections.count - open.count
    }

    /// True if the peer has closed this connection, checked without waiting.
    var isClosed: Bool { Self.waitUntilClosed([self], timeout: 0.01) == 1 }
}

/// Open file descriptors of a process (Linux).
func openDescriptors(_ pid: Int32) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
}
