import VouchAPI
import VouchIdentityRules

/// Who may read the dashboard. It reads the CA with the admin certificate, so: loopback only;
/// a Host header naming the listener (a page on another site that rebinds its DNS name to
/// 127.0.0.1 sends its own name); and a secret printed once at start, so other users of the
/// same machine cannot read through it.
public struct DashboardAccess: Sendable {
    /// The secret in the start URL and in the cookie: 32 random bytes, hex.
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

    /// The URL printed once at start; opening it sets the cookie.
    public var startURL: String { "http://\(listen)/?key=\(key)" }

    /// Per port: cookies are shared by every port of a host, and two dashboards must not overwrite each other's.
    var cookieName: String { "vouch_ui_\(listen.port)" }

    /// The Host header a browser sends for this listener: its address, or localhost, with the port.
    func isListenerHost(_ host: String?) -> Bool {
        guard let host = host?.lowercased() else { return false }
        var names = [listen.description.lowercased(), "localhost:\(listen.port)"]
        if listen.port == 80 { names += [listen.host.contains(":") ? "[\(listen.host)]" : listen.host, "localhost"] }
        return names.contains(host)
    }

    func isKey(_ candidate: String) -> Bool { constantTimeEquals(Array(candidate.utf8), Array(key.utf8)) }

    /// Whether the request's cookies hold the key.
    func hasCookie(_ cookieHeader: String?) -> Bool {
        guard let cookieHeader else { return false }
        var found = false
        for item in cookieHeader.split(separator: ";") {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0].trimmingSpaces == cookieName else { continue }
            if isKey(String(parts[1].trimmingSpaces)) { found = true }
        }
        return found
    }

    var setCookie: String { "\(cookieName)=\(key); Path=/; HttpOnly; SameSite=Strict" }
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
