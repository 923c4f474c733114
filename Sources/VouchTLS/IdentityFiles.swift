import Foundation
import X509

/// The files an agent keeps in its output directory: `svid.pem`
/// (leaf), `svid_key.pem` (PKCS#8, 0600), `chain.pem` (intermediates),
/// `bundle.pem` (trust roots); after a CA rotation also `endorsements.pem` (the proof, signed by
/// an older root, for each root not handed to the agent with --ca-bundle) and
/// `ca_intermediates.pem` (every intermediate of the CA, for peers that send only their leaf).
public struct IdentityFiles: Sendable {
    public let directory: String
    /// The names of the files written (`--file KIND=NAME`); the four read back always have one.
    public let names: OutputFileNames
    /// The password of the PKCS#12 keystore and truststore, when either is written.
    public let keystorePassword: String?

    public init(directory: String, names: OutputFileNames = .defaults, keystorePassword: String? = nil) {
        self.directory = directory
        self.names = names
        self.keystorePassword = keystorePassword
    }

    /// The path of `kind`'s file, nil when it is not written.
    public func path(_ kind: OutputFileNames.Kind) -> String? { names[kind].map { directory + "/" + $0 } }

    public var certificate: String { path(.certificate) ?? directory + "/svid.pem" }
    public var key: String { path(.key) ?? directory + "/svid_key.pem" }
    public var chain: String { path(.chain) ?? directory + "/chain.pem" }
    public var bundle: String { path(.bundle) ?? directory + "/bundle.pem" }
    public var endorsements: String { directory + "/endorsements.pem" }
    public var caIntermediates: String { directory + "/ca_intermediates.pem" }

    public static let names: Set<String> = ["svid.pem", "svid_key.pem", "chain.pem", "bundle.pem", "endorsements.pem",
                                            "ca_intermediates.pem"]

    /// Reads the four identity files (and the two optional CA files, empty when absent); throws if
    /// any of the four is missing or does not parse.
    public func load() throws -> LoadedIdentity {
        let certificatePEM = try readPEMFile(certificate), keyPEM = try readPEMFile(key)
        let chainPEM = try readPEMFile(chain), bundlePEM = try readPEMFile(bundle)
        let leaf = try Certificate(firstInPEM: certificatePEM)
        guard leaf.matches(try Certificate.PrivateKey(pemEncoded: keyPEM)) else {
            throw TLSMaterialError("\(key) does not match \(certificate)")
        }
        return LoadedIdentity(leaf: leaf, certificatePEM: certificatePEM, keyPEM: keyPEM, chainPEM: chainPEM, bundlePEM: bundlePEM,
                              endorsementsPEM: Self.optionalText(endorsements), caIntermediatesPEM: Self.optionalText(caIntermediates))
    }

    /// The text of a file the agent writes only after a CA rotation; empty when it is absent.
    public static func optionalText(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }
}

/// An identity read from disk.
public struct LoadedIdentity: Sendable {
    public let leaf: Certificate
    public let certificatePEM: String
    public let keyPEM: String
    public let chainPEM: String
    public let bundlePEM: String
    /// Older roots' signatures over roots not in --ca-bundle; empty before any rollover.
    public let endorsementsPEM: String
    /// Every intermediate of the CA that chains to a held root; empty before any rotation.
    public let caIntermediatesPEM: String

    /// Leaf followed by intermediates, as a TLS server or client presents it.
    public var fullChainPEM: String { certificatePEM + chainPEM }

    /// This identity as a listener presents and trusts it. The CA's intermediates are known to the
    /// listener, so a peer that sends only its leaf from another (newer) intermediate verifies.
    public var serverTLSMaterial: ServerTLSMaterial {
        ServerTLSMaterial(certificateChainPEM: fullChainPEM, privateKeyPEM: keyPEM, rootsPEM: bundlePEM,
                          intermediatesPEM: chainPEM + caIntermediatesPEM)
    }
}
