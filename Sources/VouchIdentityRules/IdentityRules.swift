/// Syntax rules for trust domains, SPIFFE IDs and DNS names (SPIFFE ID spec, RFC 1123); IP
/// addresses have theirs in `IPAddress`.
public enum IdentityRules {
    /// A trust domain: lowercase letters, digits, `.`, `-`, `_`; 1 to 255 characters.
    public static func isValidTrustDomain(_ domain: String) -> Bool {
        guard !domain.isEmpty, domain.utf8.count <= 255 else { return false }
        return domain.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2e || c == 0x2d || c == 0x5f
        }
    }

    /// The trust domain of a well-formed SPIFFE ID, or nil if the ID is malformed.
    /// The path must be non-empty, with segments of letters, digits, `.`, `-`, `_`,
    /// and no empty, `.` or `..` segments.
    public static func trustDomain(ofSPIFFEID id: String) -> String? {
        let prefix = "spiffe://"
        guard id.hasPrefix(prefix), id.utf8.count <= 2048 else { return nil }
        let rest = id.dropFirst(prefix.count)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let domain = String(rest[..<slash])
        guard isValidTrustDomain(domain) else { return nil }
        let segments = rest[rest.index(after: slash)...].split(separator: "/", omittingEmptySubsequences: false)
        guard !segments.isEmpty else { return nil }
        for segment in segments {
            guard !segment.isEmpty, segment != ".", segment != ".." else { return nil }
            guard segment.utf8.allSatisfy({ c in
                (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39)
                    || c == 0x2e || c == 0x2d || c == 0x5f
            }) else { return nil }
        }
        return domain
    }

    /// A DNS name: lowercase labels of letters, digits and `-`, optionally a leading `*.` label.
    public static func isValidDNSName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        var labels = name.split(separator: ".", omittingEmptySubsequences: false)
        if labels.first == "*" {
            labels.removeFirst()
            guard labels.count >= 2 else { return false }
        }
        return !labels.isEmpty && labels.allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && label.first != "-" && label.last != "-"
                && label.utf8.allSatisfy { c in (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d }
        }
    }
}
