import Foundation
import VouchCrypto
import VouchFiles
import VouchIdentityRules

/// Creates a new CA directory: root (10 years), intermediate (5 years), the CA
/// listener's server certificate and the first admin client certificate.
public struct CAInitializer {
    public var files: CAFiles
    public var trustDomain: String
    /// Encrypts the root and intermediate keys when set.
    public var passphrase: String?
    /// Extra SANs for the server certificate, beyond localhost and 127.0.0.1.
    public var serverDNSNames: [String]
    public var serverIPAddresses: [String]
    public var now: Date
    /// Where the root and intermediate keys are made and kept.
    public var keyStore: CAKeyStore = .files

    public init(files: CAFiles, trustDomain: String, passphrase: String?, serverDNSNames: [String] = [],
                serverIPAddresses: [String] = [], now: Date = Date()) {
        self.files = files
        self.trustDomain = trustDomain
        self.passphrase = passphrase
        self.serverDNSNames = serverDNSNames
        self.serverIPAddresses = serverIPAddresses
        self.now = now
    }

    static let year: TimeInterval = 365 * 24 * 3600

    /// Writes the CA files and returns the leaf certificates it issued, for the store.
    public func run() throws -> [CertificateRecord] {
        guard IdentityRules.isValidTrustDomain(trustDomain) else {
            throw AuthorityError(.invalidArgument, "\(trustDomain.debugDescription) is not a valid trust domain (lowercase letters, digits, . - _)")
        }
        for name in serverDNSNames where !IdentityRules.isValidDNSName(name) {
            throw AuthorityError(.invalidArgument, "--san \(name.debugDescription) is not a valid DNS name")
        }
        let serverIPs = try (["127.0.0.1"] + serverIPAddresses).map { ip -> String in
            guard let canonical = IPAddress.canonical(ip) else { throw AuthorityError(.invalidArgument, "--san \(ip) is not an IP address") }
            return canonical
        }
        let fm = FileManager.default
        for existing in [files.settings, files.rootKey, files.intermediateKey, files.database] where fm.fileExists(atPath: existing) {
            throw AuthorityError(.failedPrecondition, "\(existing) exists: refusing to overwrite an existing CA")
        }
        try fm.createDirectory(atPath: files.directory.path, withIntermediateDirectories: true,
                               attributes: [.posixPermissions: 0o700])

        var madeInToken: [(PKCS11Token, TokenKeyReference)] = []
        do {
            return try run(serverIPs: serverIPs, makingKeys: { kind in
                let made = try makeKey(kind)
                if let token = made.token, let reference = made.reference { madeInToken.append((token, reference)) }
                return made
            })
        } catch {
            // A failed init leaves no key behind in a token (nothing refers to it).
            for (token, reference) in madeInToken { try? token.destroyKey(reference) }
            throw error
        }
    }

    /// A root or intermediate key: OpenSSL's for key files, else a new key pair in the token.
    private func makeKey(_ kind: IssuerKind) throws -> (key: PrivateKey, token: PKCS11Token?, reference: TokenKeyReference?) {
        switch keyStore {
        case .files:
            return (try PrivateKey(generating: .p256), nil, nil)
        case .token(let intermediateToken, let rootToken):
            let token = kind == .root ? rootToken : intermediateToken
            let made = try token.generateKey(.p256, label: CAKeyStore.newLabel(kind))
            return (made.key, token, made.reference)
        }
    }

    private func run(serverIPs: [String], makingKeys makeKey: (IssuerKind) throws -> (key: PrivateKey, token: PKCS11Token?, reference: TokenKeyReference?))
        throws -> [CertificateRecord] {
        let madeRoot = try makeKey(.root)
        let rootKey = madeRoot.key
        let root = try CertificateSigner.selfSigned(key: rootKey, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(),
            subject: [("O", "Vouch"), ("CN", "Vouch Root CA")],
            notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(10 * Self.year)))
        let rootSigner = try CertificateSigner(certificate: root, key: rootKey)

        let madeIntermediate = try makeKey(.intermediate)
        let intermediateKey = madeIntermediate.key
        let intermediate = try rootSigner.sign(publicKeyOf: intermediateKey, template: CertificateTemplate(
            role: .authority(pathLength: 0), serial: try SerialNumber.random(),
            subject: [("O", "Vouch"), ("CN", "Vouch Intermediate CA")],
            notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(5 * Self.year)))
        let signer = try CertificateSigner(certificate: intermediate, key: intermediateKey)

        let server = try issueLeaf(signer: signer, spiffeID: IssuancePolicy.serverID(trustDomain: trustDomain),
                                   dnsNames: ["localhost"] + serverDNSNames, ipAddresses: serverIPs)
        let admin = try issueLeaf(signer: signer, spiffeID: IssuancePolicy.adminID(trustDomain: trustDomain),
                                  dnsNames: [], ipAddresses: [])

        // Keys first with O_EXCL, so a concurrent init cannot interleave; settings last marks the CA complete.
        // Keys made in a token stay there: ca.json names them.
        if madeRoot.reference == nil {
            try AtomicFile.create(Array(try rootKey.pkcs8PEM(passphrase: passphrase).utf8), at: files.rootKey, mode: 0o600)
        }
        if madeIntermediate.reference == nil {
            try AtomicFile.create(Array(try intermediateKey.pkcs8PEM(passphrase: passphrase).utf8), at: files.intermediateKey, mode: 0o600)
        }
        try AtomicFile.write(root.pem, to: files.rootCertificate)
        try AtomicFile.write(root.pem, to: files.bundle)
        try AtomicFile.write(intermediate.pem, to: files.intermediateCertificate)
        try AtomicFile.write(server.certificate.pem + intermediate.pem, to: files.serverCertificate)
        try AtomicFile.write(try server.key.pkcs8PEM(), to: files.serverKey, mode: 0o600)
        try AtomicFile.write(admin.certificate.pem + intermediate.pem, to: files.adminCertificate)
        try AtomicFile.write(try admin.key.pkcs8PEM(), to: files.adminKey, mode: 0o600)
        var settings = CASettings(trustDomain: trustDomain, keysEncrypted: !(passphrase ?? "").isEmpty, createdAt: now)
        if case .token(let token, _) = keyStore {
            settings.keysEncrypted = false
            settings.intermediateKey = madeIntermediate.reference?.description
            settings.rootKey = madeRoot.reference?.description
            settings.pkcs11Module = token.modulePath
            settings.pkcs11Token = token.label
        }
        try AtomicFile.write(try settings.encoded(), to: files.settings, mode: 0o600)
        return [server.record, admin.record]
    }

    private func issueLeaf(signer: CertificateSigner, spiffeID: String, dnsNames: [String], ipAddresses: [String])
        throws -> (certificate: X509Certificate, key: PrivateKey, record: CertificateRecord) {
        let issued = try LocalIssuance.issue(signer: signer, spiffeID: spiffeID, dnsNames: dnsNames, ipAddresses: ipAddresses,
                                             lifetime: Self.year, now: now)
        return (issued.certificate, issued.key, issued.record)
    }
}

/// Where `ca init` makes the root and intermediate keys.
public enum CAKeyStore: Sendable {
    /// OpenSSL keys in root_key.pem and intermediate_key.pem (encrypted with the passphrase when one is given).
    case files
    /// Key pairs made inside PKCS#11 tokens, never extractable: the intermediate's in the first
    /// token, the root's in `root` (the same token, or one whose PIN servers never get).
    case token(PKCS11Token, root: PKCS11Token)

    /// The tokens, when the keys are made in tokens.
    public var tokens: (intermediate: PKCS11Token, root: PKCS11Token)? {
        if case .token(let token, let root) = self { return (token, root) }
        return nil
    }

    /// `vouch-root-1a2b3c4d`, `vouch-intermediate-1a2b3c4d`: a label an operator can tell apart in
    /// `pkcs11-tool --list-objects`, unique enough for several CAs (and rotations) in one token.
    public static func newLabel(_ kind: IssuerKind) -> String {
        let suffix = (0..<4).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        return labelPrefix(kind) + suffix
    }

    /// The start of every label `newLabel` makes for `kind`.
    public static func labelPrefix(_ kind: IssuerKind) -> String { "vouch-\(kind == .root ? "root" : "intermediate")-" }
}
