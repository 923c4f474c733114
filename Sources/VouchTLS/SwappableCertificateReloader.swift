import NIOCertificateReloading
import NIOSSL
import Synchronization
import X509

/// A certificate reloader that is pushed new material instead of polling:
/// NIOSSL reads it on every new handshake, so new connections get the new
/// certificate while established ones keep theirs.
public final class SwappableCertificateReloader: CertificateReloader, Sendable {
    private let current: Mutex<NIOSSLContextConfigurationOverride>

    public init(certificateChainPEM: String, privateKeyPEM: String) throws {
        current = Mutex(try Self.override(certificateChainPEM: certificateChainPEM, privateKeyPEM: privateKeyPEM))
    }

    public var sslContextConfigurationOverride: NIOSSLContextConfigurationOverride { current.withLock { $0 } }

    /// Swaps in a new certificate chain and key, after checking that they belong together
    /// (a mismatched pair would fail every handshake).
    public func update(certificateChainPEM: String, privateKeyPEM: String) throws {
        let next = try Self.override(certificateChainPEM: certificateChainPEM, privateKeyPEM: privateKeyPEM)
        current.withLock { $0 = next }
    }

    static func override(certificateChainPEM: String, privateKeyPEM: String) throws -> NIOSSLContextConfigurationOverride {
        let leaf = try Certificate(firstInPEM: certificateChainPEM)
        guard leaf.matches(try Certificate.PrivateKey(pemEncoded: privateKeyPEM)) else {
            throw TLSMaterialError("private key does not match certificate \(leaf.serialHex)")
        }
        var override = NIOSSLContextConfigurationOverride()
        override.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificateChainPEM.utf8)).map { .certificate($0) }
        override.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem))
        return override
    }
}
