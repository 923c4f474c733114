internal import CVouchOpenSSL
import Foundation

/// Signatures over arbitrary bytes with a CA key (ECDSA with the key's usual digest,
/// Ed25519 or RSA PKCS#1 v1.5), for records that are not certificates, such as audit checkpoints.
extension CertificateSigner {
    public func signMessage(_ message: [UInt8]) throws -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { throw cryptoFailure(.failure, "EVP_MD_CTX_new failed") }
        defer { EVP_MD_CTX_free(context) }
        guard key.withUnsafeKeyPointer({ EVP_DigestSignInit(context, nil, signingDigest(for: $0), nil, $0) }) == 1 else {
            throw cryptoFailure(.failure, "cannot start signing")
        }
        var length = 0
        guard EVP_DigestSign(context, nil, &length, message, message.count) == 1 else {
            throw cryptoFailure(.failure, "cannot size the signature")
        }
        var signature = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(context, &signature, &length, message, message.count) == 1 else {
            throw key.signingFailure("signing failed")
        }
        return Array(signature.prefix(length))
    }
}

extension X509Certificate {
    /// Whether `signature` over `message` verifies with this certificate's public key.
    public func verifiesMessage(_ message: [UInt8], signature: [UInt8]) -> Bool {
        withPublicKey { Self.verifies(message, signature: signature, with: $0) } ?? false
    }

    private static func verifies(_ message: [UInt8], signature: [UInt8], with key: OpaquePointer) -> Bool {
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, signingDigest(for: key), nil, key) == 1 else {
            _ = openSSLErrors()
            return false
        }
        let verified = EVP_DigestVerify(context, signature, signature.count, message, message.count) == 1
        _ = openSSLErrors()
        return verified
    }
}
