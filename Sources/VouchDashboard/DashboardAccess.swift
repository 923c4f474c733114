import VouchAPI
import VouchIdentityRules

/// Who may read the dashboard. It reads the CA with the admin certificate, so: loopback only;
/// a Host header naming the listener (a page on another site that rebinds its DNS name to
/// 127.0.0.1 sends its own name); and a secret printed once at start, so other users of the
/// same machine cannot read through it. The secret is the first segment of every page's path: a
/// browser sends a path to its own origin only, where a cookie would go to every port of the host.
public struct DashboardAccess: Sendable {
    /// The secret in every page's path: 32 random bytes, hex.
    public let key: String
    /// The bound address, its port known (not 0).
    public let listen: HostPort

    public init(key: String, listen: HostPort) {
        self.key = key
        self.listen = listen
    }

    public static func randomKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in
            let byte = UInt8.random(in: 0...255, using: &generator)
            return (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }.joined()
    }

    /// The address to bind for `--listen`: a loopback address; `localhost` is 127.0.0.1.
    public static func loopbackListen(_ address: HostPort) throws -> HostPort {
        if address.host.lowercased() == "localhost" { return HostPort(host: "127.0.0.1", port: address.port) }
        if let bytes = IPAddress.parse(address.host),
           (bytes.count == 4 && bytes[0] == 127) || bytes == Array(repeating: 0, count: 15) + [1] {
            // As a browser writes it in the Host header.
            return HostPort(host: IPAddress.format(bytes), port: address.port)
        }
        throw DashboardRefusal("--listen \(address) is not a loopback address: the dashboard reads the CA with the admin "
                               + "certificate, so it listens on 127.0.0.1, [::1] or localhost only")
    }

    /// The URL printed once at start: the inventory page.
    public var startURL: String { "http://\(listen)/\(key)/" }

    /// The Host header a browser sends for this listener: its address, or localhost, with the port.
    func isListenerHost(_ host: String?) -> Bool {
        guard let host = host?.lowercased() else { return false }
        var names = [listen.description.lowercased(), "localhost:\(listen.port)"]
        if listen.port == 80 { names += [listen.host.contains(":") ? "[\(listen.host)]" : listen.host, "localhost"] }
        return names.contains(host)
    }

    /// The page a request path names below `/<key>/` (`/` for the inventory), or nil when its first
    /// segment is not the key. `/<key>` without the slash names the page "" (none).
    func pagePath(_ requestPath: String) -> String? {
        guard requestPath.hasPrefix("/") else { return nil }
        let rest = requestPath.utf8.dropFirst()
        let segment = rest.prefix { $0 != UInt8(ascii: "/") }
        guard constantTimeEquals(Array(segment), Array(key.utf8)) else { return nil }
        return String(decoding: rest.dropFirst(segment.count), as: UTF8.self)
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell how much
/// of a guessed key was right.
func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference = UInt8(a.count == b.count ? 0 : 1)
    for index in 0..<b.count {
        difference |= (index < a.count ? a[index] : 0) ^ b[index]
    }
    return difference == 0
}

/// Why `vouch ui` does not start, in one line.
public struct DashboardRefusal: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Substring {
    var trimmingSpaces: Substring {
        var text = self
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return text
    }
}
