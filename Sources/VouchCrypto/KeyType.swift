/// A kind of public key as certificate profiles name it (`key_types` in the config file). Unlike
/// `KeyAlgorithm`, which says exactly what to generate, `rsa` covers every RSA size Vouch accepts.
public enum KeyType: String, Sendable, CaseIterable {
    case p256
    case p384
    case ed25519
    case rsa
}

extension PublicKeyDescription {
    /// The profile name of this key's type; nil for a key no profile can name.
    public var keyType: KeyType? {
        switch (family, curve) {
        case (.ec, "prime256v1"): return .p256
        case (.ec, "secp384r1"): return .p384
        case (.ed25519, _): return .ed25519
        case (.rsa, _): return .rsa
        default: return nil
        }
    }
}
