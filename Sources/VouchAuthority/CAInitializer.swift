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

        let rootKey = try PrivateKey(generating: .p256)
        let root = try CertificateSigner.selfSigned(key: rootKey, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(),
            subject: [("O", "Vouch"), ("CN", "Vouch Root CA")],
            notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(10 * Self.year)))
        let rootSigner = try CertificateSigner(certificate: root, key: rootKey)

        let intermediateKey = try PrivateKey(generating: .p256)
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
        try AtomicFile.create(Array(try rootKey.pkcs8PEM(passphrase: passphrase).utf8), at: files.rootKey, mode: 0o600)
        try AtomicFile.create(Array(try intermediateKey.pkcs8PEM(passphrase: passphrase).utf8), at: files.intermediateKey, mode: 0o600)
        try AtomicFile.write(root.pem, to: files.rootCertificate)
        try AtomicFile.write(root.pem, to: files.bundle)
        try AtomicFile.write(intermediate.pem, to: files.intermediateCertificate)
        try AtomicFile.write(server.certificate.pem + intermediate.pem, to: files.serverCertificate)
        try AtomicFile.write(try server.key.pkcs8PEM(), to: files.serverKey, mode: 0o600)
        try AtomicFile.write(admin.certificate.pem + intermediate.pem, to: files.adminCertificate)
        try AtomicFile.write(try admin.key.pkcs8PEM(), to: files.adminKey, mode: 0o600)
        let settings = CASettings(trustDomain: trustDomain, keysEncrypted: !(passphrase ?? "").isEmpty, createdAt: now)
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
