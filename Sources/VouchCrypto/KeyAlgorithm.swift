/// Key types Vouch generates and accepts.
public enum KeyAlgorithm: String, Sendable, CaseIterable, Codable {
    case p256 = "p256"
    case p384 = "p384"
    case ed25519 = "ed25519"
    case rsa2048 = "rsa2048"
    case rsa3072 = "rsa3072"
    case rsa4096 = "rsa4096"
}

/// What a public key turned out to be, for policy checks.
public struct PublicKeyDescription: Sendable, Equatable, CustomStringConvertible {
    public enum Family: String, Sendable { case ec, ed25519, rsa, other }
    public let family: Family
    /// Curve name for EC keys ("prime256v1", "secp384r1", ...), empty otherwise.
    public let curve: String
    public let bits: Int

    public var description: String {
        switch family {
        case .ec: return "EC \(curve)"
        case .ed25519: return "Ed25519"
        case .rsa: return "RSA \(bits)"
        case .other: return "unknown key (\(bits) bits)"
        }
    }

    /// The key types Vouch accepts in CSRs: P-256, P-384, Ed25519, RSA 2048 to 8192.
    public var isAcceptedForLeaf: Bool {
        switch family {
        case .ec: return curve == "prime256v1" || curve == "secp384r1"
        case .ed25519: return true
        case .rsa: return bits >= 2048 && bits <= 8192
        case .other: return false
        }
    }
}
