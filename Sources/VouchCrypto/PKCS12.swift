internal import CVouchOpenSSL
import Foundation

/// PKCS#12 files for Java and other readers of keystores, made by the system OpenSSL:
/// AES-256-CBC with PBKDF2 (hmacWithSHA256) and a SHA-256 MAC, which Java 8u301+/11.0.12+/17 read
/// (no legacy RC2 or 3DES).
public enum PKCS12 {
    /// The alias of the keystore's one entry.
    public static let keyAlias = "vouch"
    /// Truststore aliases are this followed by the root's serial in hex.
    public static let rootAliasPrefix = "vouch-root-"

    /// A keystore with one PrivateKeyEntry: the key (PKCS#8 PEM), its certificate and the
    /// intermediates (PEM, leaf's issuer first), so a server presents the whole chain.
    public static func keystore(keyPEM: String, certificatePEM: String, chainPEM: String, password: String) throws -> [UInt8] {
        try der("keystore") { out in vouch_pkcs12_keystore(keyPEM, certificatePEM, chainPEM, password, keyAlias, out) }
    }

    /// A truststore with each certificate of `rootsPEM` as a trustedCertEntry (the bag carries
    /// Oracle's trusted-key-usage attribute: without it Java sees "0 entries").
    public static func truststore(rootsPEM: String, password: String) throws -> [UInt8] {
        try der("truststore") { out in vouch_pkcs12_truststore(rootsPEM, password, rootAliasPrefix, out) }
    }

    private static func der(_ what: String, _ make: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>) -> Int32) throws -> [UInt8] {
        var out: UnsafeMutablePointer<UInt8>?
        let length = make(&out)
        guard length > 0, let out else { throw cryptoFailure(.failure, "cannot build the PKCS#12 \(what)") }
        defer { vouch_openssl_free(out) }
        return Array(UnsafeBufferPointer(start: out, count: Int(length)))
    }
}
