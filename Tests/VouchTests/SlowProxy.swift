import Foundation

/// A TCP proxy on 127.0.0.1 that can hold back the upstream's replies, to
/// play a CA that accepts requests but answers too late.
final class SlowProxy: @unchecked Sendable {
    private let lock = NSLock()
    private var holding = false
    private let listener: Int32
    private(set) var port = 0
    private let upstreamPort: Int

    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 64) == 0 else { throw CLIFailure("proxy bind failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    /// While true, bytes from the CA are held back (not dropped) until it turns false.
    var holdReplies: Bool {
        get { lock.withLock { holding } }
        set { lock.withLock { holding = newValue } }
    }

    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { close(client); close(upstream); continue }
            Thread { [self] in pump(from: client, to: upstream, holdable: false) }.start()
            Thread { [self] in pump(from: upstream, to: client, holdable: true) }.start()
        }
    }

    private func pump(from source: Int32, to destination: Int32, holdable: Bool) {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = read(source, &buffer, buffer.count)
            if count <= 0 { break }
            while holdable && holdReplies { Thread.sleep(forTimeInterval: 0.05) }
            var offset = 0
            while offset < count {
                let written = buffer[offset..<count].withUnsafeBytes { write(destination, $0.baseAddress, $0.count) }
                if written <= 0 { break }
                offset += written
            }
        }
        shutdown(destination, Int32(SHUT_WR))
    }

    deinit { close(listener) }
}
