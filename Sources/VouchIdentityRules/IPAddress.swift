import Foundation

/// Canonical text forms for IP SANs, so grants and certificates compare equal.
public enum IPAddress {
    /// Parses IPv4 or IPv6 text into its canonical form, or nil if it is not an address.
    public static func canonical(_ text: String) -> String? {
        guard let bytes = parse(text) else { return nil }
        return format(bytes)
    }

    /// Network-order bytes of an IPv4 (4) or IPv6 (16) address.
    public static func parse(_ text: String) -> [UInt8]? {
        // inet_pton reads a C string: an embedded NUL would hide whatever follows it.
        guard text.utf8.count <= 64, !text.utf8.contains(0) else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    /// Formats 4 or 16 network-order bytes; anything else as hex.
    public static func format(_ bytes: [UInt8]) -> String {
        let family: Int32
        switch bytes.count {
        case 4: family = AF_INET
        case 16: family = AF_INET6
        default: return bytes.map { String(format: "%02x", $0) }.joined()
        }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
