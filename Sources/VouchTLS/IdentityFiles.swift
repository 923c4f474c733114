import Foundation
import X509

/// The files an agent keeps in its output directory: `svid.pem`
/// (leaf), `svid_key.pem` (PKCS#8, 0600), `chain.pem` (intermediates),
/// `bundle.pem` (trust roots).
public struct IdentityFiles: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public var certificate: String { directory + "/svid.pem" }
    public var key: String { directory + "/svid_key.pem" }
    public var chain: String { directory + "/chain.pem" }
    public var bundle: String { directory + "/bundle.pem" }

    public static let names: Set<String> = ["svid.pem", "svid_key.pem", "chain.pem", "bundle.pem"]

    /// Reads the four files; throws if any is missing or does not parse.
    public func load() throws -> LoadedIdentity {
        let certificatePEM = try readPEMFile(certificate), keyPEM = try readPEMFile(key)
        let chainPEM = try readPEMFile(chain), bundlePEM = try readPEMFile(bundle)
        let leaf = try Certificate(firstInPEM: certificatePEM)
        guard leaf.matches(try Certificate.PrivateKey(pemEncoded: keyPEM)) else {
            throw TLSMaterialError("\(key) does not match \(certificate)")
        }
        return LoadedIdentity(leaf: leaf, certificatePEM: certificatePEM, keyPEM: keyPEM, chainPEM: chainPEM, bundlePEM: bundlePEM)
    }
}

/// An identity read from disk.
public struct LoadedIdentity: Sendable {
    public let leaf: Certificate
    public let certificatePEM: String
    public let keyPEM: String
    public let chainPEM: String
    public let bundlePEM: String

    /// Leaf followed by intermediates, as a TLS server or client presents it.
    public var fullChainPEM: String { certificatePEM + chainPEM }

    /// This identity as a listener presents and trusts it.
    public var serverTLSMaterial: ServerTLSMaterial {
        ServerTLSMaterial(certificateChainPEM: fullChainPEM, privateKeyPEM: keyPEM, rootsPEM: bundlePEM, intermediatesPEM: chainPEM)
    }
}
