internal import CVouchOpenSSL
import Foundation

/// A private key held by OpenSSL (EVP_PKEY).
public final class PrivateKey: @unchecked Sendable {
    // Immutable after init; OpenSSL allows concurrent signing with one EVP_PKEY. Other files
    // reach it only through `withUnsafeKeyPointer`.
    private let pointer: OpaquePointer
    /// The token whose C_Sign makes this key's signatures; nil for a key held in memory. Held
    /// strongly: the token stays open while any of its keys exists.
    let token: PKCS11Token?

    init(owning pointer: OpaquePointer, token: PKCS11Token? = nil) {
        self.pointer = pointer
        self.token = token
    }

    /// True for a key that lives in a PKCS#11 token (it cannot be exported).
    public var isInToken: Bool { token != nil }
    /// The label of the token holding this key, if it is in one.
    public var tokenLabel: String? { token?.label }
    deinit { EVP_PKEY_free(pointer) }

    /// Lends the OpenSSL EVP_PKEY to `body`, which must not keep it after returning.
    func withUnsafeKeyPointer<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        try body(pointer)
    }

    /// Generates a fresh key.
    public convenience init(generating algorithm: KeyAlgorithm) throws {
        let name: String
        switch algorithm {
        case .p256, .p384: name = "EC"
        case .ed25519: name = "ED25519"
        case .rsa2048, .rsa3072, .rsa4096: name = "RSA"
        }
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, name, nil) else {
            throw cryptoFailure(.failure, "cannot create key context")
        }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_keygen_init(ctx) == 1 else { throw cryptoFailure(.failure, "keygen init failed") }
        switch algorithm {
        case .p256: guard EVP_PKEY_CTX_set_group_name(ctx, "P-256") == 1 else { throw cryptoFailure(.failure, "set curve") }
        case .p384: guard EVP_PKEY_CTX_set_group_name(ctx, "P-384") == 1 else { throw cryptoFailure(.failure, "set curve") }
        case .rsa2048: guard EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048) == 1 else { throw cryptoFailure(.failure, "set bits") }
        case .rsa3072: guard EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 3072) == 1 else { throw cryptoFailure(.failure, "set bits") }
        case .rsa4096: guard EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 4096) == 1 else { throw cryptoFailure(.failure, "set bits") }
        case .ed25519: break
        }
        var key: OpaquePointer?
        guard EVP_PKEY_generate(ctx, &key) == 1, let key else { throw cryptoFailure(.failure, "key generation failed") }
        self.init(owning: key)
    }

    /// Reads a PEM private key (PKCS#8 or traditional), decrypting it with `passphrase` if it is encrypted.
    public convenience init(pem: String, passphrase: String? = nil) throws {
        let key: OpaquePointer? = try withReadBIO(Array(pem.utf8)) { bio in
            // An empty passphrase string stops OpenSSL from prompting on a terminal.
            let secret = passphrase ?? ""
            return secret.withCString { cString in
                PEM_read_bio_PrivateKey(bio, nil, nil, UnsafeMutableRawPointer(mutating: cString))
            }
        }
        guard let key else {
            let detail = openSSLErrors()
            if pem.contains("ENCRYPTED") {
                throw CryptoError(.passphrase, "cannot decrypt private key (wrong or missing passphrase)")
            }
            throw CryptoError(.malformed, "not a PEM private key" + (detail.isEmpty ? "" : ": \(detail)"))
        }
        self.init(owning: key)
    }

    /// PKCS#8 PEM, encrypted with AES-256-CBC when a passphrase is given.
    public func pkcs8PEM(passphrase: String? = nil) throws -> String {
        if let token {
            throw CryptoError(.token, "a key in PKCS#11 token \"\(token.label)\" cannot be exported")
        }
        let bytes = try withMemoryBIO { bio in
            let ok: Int32
            if let passphrase, !passphrase.isEmpty {
                ok = passphrase.withCString { cString in
                    PEM_write_bio_PKCS8PrivateKey(bio, pointer, EVP_aes_256_cbc(), nil, 0, nil,
                                                  UnsafeMutableRawPointer(mutating: cString))
                }
            } else {
                ok = PEM_write_bio_PKCS8PrivateKey(bio, pointer, nil, nil, 0, nil, nil)
            }
            guard ok == 1 else { throw cryptoFailure(.failure, "cannot encode private key") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The SubjectPublicKeyInfo, DER.
    public var publicKeyDER: [UInt8] {
        get throws { try derEncode { i2d_PUBKEY(pointer, $0) } }
    }

    public var publicKeyDescription: PublicKeyDescription { describePublicKey(pointer) }
}

/// Describes an EVP_PKEY for policy checks.
func describePublicKey(_ key: OpaquePointer) -> PublicKeyDescription {
    let bits = Int(EVP_PKEY_get_bits(key))
    switch EVP_PKEY_get_base_id(key) {
    case EVP_PKEY_EC:
        var name = [CChar](repeating: 0, count: 64)
        var length = 0
        let ok = EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, &name, name.count, &length)
        return PublicKeyDescription(family: .ec, curve: ok == 1 ? decodeCString(name) : "unknown", bits: bits)
    case EVP_PKEY_ED25519:
        return PublicKeyDescription(family: .ed25519, curve: "", bits: bits)
    case EVP_PKEY_RSA:
        return PublicKeyDescription(family: .rsa, curve: "", bits: bits)
    default:
        return PublicKeyDescription(family: .other, curve: "", bits: bits)
    }
}

/// The digest to sign with for a key: none for Ed25519 (it hashes internally), SHA-384 for P-384, else SHA-256.
func signingDigest(for key: OpaquePointer) -> OpaquePointer? {
    let description = describePublicKey(key)
    switch description.family {
    case .ed25519: return nil
    case .ec where description.curve == "secp384r1": return EVP_sha384()
    default: return EVP_sha256()
    }
}
