import Foundation
import VouchCrypto

/// The CA certificates and the online signing key, parsed once at start-up.
public struct CAMaterial: Sendable {
    public let settings: CASettings
    public let root: X509Certificate
    public let intermediate: X509Certificate
    /// Signs leaves and CRLs with the intermediate key.
    public let signer: CertificateSigner
    /// The roots clients should trust: bundle.pem, which holds more than this CA's own root
    /// during a root rollover. Handed out with every certificate and by GetTrustBundle.
    public let trustRoots: [X509Certificate]

    public init(settings: CASettings, root: X509Certificate, intermediate: X509Certificate, signer: CertificateSigner,
                trustRoots: [X509Certificate]? = nil) {
        self.settings = settings
        self.root = root
        self.intermediate = intermediate
        self.signer = signer
        self.trustRoots = trustRoots ?? [root]
    }

    /// Loads a CA directory made by `vouch ca init`.
    public static func load(from files: CAFiles, passphrase: String?) throws -> CAMaterial {
        let settings = try CASettings.load(from: files)
        if settings.keysEncrypted && (passphrase ?? "").isEmpty {
            throw AuthorityError(.failedPrecondition,
                                 "the CA key is encrypted: pass --passphrase-file or set VOUCH_CA_PASSPHRASE")
        }
        let root = try X509Certificate(pem: try readText(files.rootCertificate))
        let intermediate = try X509Certificate(pem: try readText(files.intermediateCertificate))
        let key = try PrivateKey(pem: try readText(files.intermediateKey), passphrase: passphrase)
        guard intermediate.isSigned(by: root) else {
            throw AuthorityError(.failedPrecondition, "intermediate.pem is not signed by root.pem")
        }
        var trustRoots = [root]
        if let bundle = try? String(contentsOfFile: files.bundle, encoding: .utf8) {
            let extra = try X509Certificate.all(inPEM: bundle).filter { $0.der != root.der }
            trustRoots += extra
        }
        return CAMaterial(settings: settings, root: root, intermediate: intermediate,
                          signer: try CertificateSigner(certificate: intermediate, key: key), trustRoots: trustRoots)
    }
}

func readText(_ path: String) throws -> String {
    do {
        return try String(contentsOfFile: path, encoding: .utf8)
    } catch {
        throw AuthorityError(.notFound, "cannot read \(path)")
    }
}
