import Foundation
import VouchCrypto

/// What the CA starts from: its settings and the initial pair of its directory (root.pem,
/// intermediate.pem and its key), parsed once. The issuers that sign afterwards are in the
/// database (`IssuerSet`); the pair is adopted there at the first start.
public struct CAMaterial: Sendable {
    public let settings: CASettings
    public let root: X509Certificate
    public let intermediate: X509Certificate
    /// The initial intermediate's signer.
    public let signer: CertificateSigner
    /// The CA directory, where later intermediates' key files are (nil for a CA made in memory).
    public let files: CAFiles?
    /// The CA passphrase: it decrypts keys kept encrypted in the database.
    public let passphrase: String?

    public init(settings: CASettings, root: X509Certificate, intermediate: X509Certificate, signer: CertificateSigner,
                files: CAFiles? = nil, passphrase: String? = nil) {
        self.settings = settings
        self.root = root
        self.intermediate = intermediate
        self.signer = signer
        self.files = files
        self.passphrase = passphrase
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
        return CAMaterial(settings: settings, root: root, intermediate: intermediate,
                          signer: try CertificateSigner(certificate: intermediate, key: key),
                          files: files, passphrase: passphrase)
    }

    /// The initial pair as issuer records, as `AuthorityStore.adoptInitialIssuers` takes them
    /// (ids -1 and 0: the store assigns the real ones).
    public func initialRecords(now: Date = Date()) -> (root: IssuerRecord, intermediate: IssuerRecord) {
        let rootRecord = IssuerRecord(id: -1, kind: .root, state: .active, serial: root.serialHex, der: root.der,
                                      notBefore: root.notBefore, notAfter: root.notAfter,
                                      keyRef: IssuerRecord.offlineKeyRef, createdAt: now)
        let intermediateRecord = IssuerRecord(id: 0, kind: .intermediate, state: .active, parentID: -1,
                                              serial: intermediate.serialHex, der: intermediate.der,
                                              notBefore: intermediate.notBefore, notAfter: intermediate.notAfter,
                                              keyRef: IssuerRecord.initialKeyRef, createdAt: now)
        return (rootRecord, intermediateRecord)
    }
}

func readText(_ path: String) throws -> String {
    do {
        return try String(contentsOfFile: path, encoding: .utf8)
    } catch {
        throw AuthorityError(.notFound, "cannot read \(path)")
    }
}
