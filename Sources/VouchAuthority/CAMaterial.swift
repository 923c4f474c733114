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
    /// The PKCS#11 token this process logged in to (`--pkcs11-module`, `--pkcs11-pin-file`), if any:
    /// intermediates whose key reference is a `pkcs11:` URI sign with its keys.
    public let token: PKCS11Token?

    public init(settings: CASettings, root: X509Certificate, intermediate: X509Certificate, signer: CertificateSigner,
                files: CAFiles? = nil, passphrase: String? = nil, token: PKCS11Token? = nil) {
        self.settings = settings
        self.root = root
        self.intermediate = intermediate
        self.signer = signer
        self.files = files
        self.passphrase = passphrase
        self.token = token
    }

    /// What opens the keys of later intermediates (`IssuerSet.load`).
    public var keys: KeyAccess {
        KeyAccess(files: files, passphrase: passphrase, token: token, initialKeyRef: settings.intermediateKey)
    }

    /// Loads a CA directory made by `vouch ca init`. When ca.json's `intermediate_key` is a
    /// `pkcs11:` URI the key is taken from `token`, and no intermediate_key.pem is read.
    public static func load(from files: CAFiles, passphrase: String?, token: PKCS11Token? = nil) throws -> CAMaterial {
        let settings = try CASettings.load(from: files)
        let inToken = settings.intermediateKey.map(TokenKeyReference.isReference) == true
        if settings.keysEncrypted && !inToken && (passphrase ?? "").isEmpty {
            throw AuthorityError(.failedPrecondition,
                                 "the CA key is encrypted: pass --passphrase-file or set VOUCH_CA_PASSPHRASE")
        }
        let root = try X509Certificate(pem: try readText(files.rootCertificate))
        let intermediate = try X509Certificate(pem: try readText(files.intermediateCertificate))
        guard intermediate.isSigned(by: root) else {
            throw AuthorityError(.failedPrecondition, "intermediate.pem is not signed by root.pem")
        }
        let signer: CertificateSigner
        if let uri = settings.intermediateKey, inToken {
            // The same checks as any issuer row naming a token key (the key is the certificate's and signs).
            let record = IssuerRecord(kind: .intermediate, state: .active, serial: intermediate.serialHex, der: intermediate.der,
                                      notBefore: intermediate.notBefore, notAfter: intermediate.notAfter, keyRef: uri, createdAt: Date())
            signer = try IssuerKeys.load(record, keys: KeyAccess(files: files, token: token))
        } else {
            let key = try PrivateKey(pem: try readText(files.intermediateKey), passphrase: passphrase)
            signer = try CertificateSigner(certificate: intermediate, key: key)
        }
        return CAMaterial(settings: settings, root: root, intermediate: intermediate, signer: signer,
                          files: files, passphrase: passphrase, token: token)
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
