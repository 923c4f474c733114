import Foundation
import VouchCrypto

/// Builds the CA certificates of an intermediate rotation and a root rollover. Pure: no store,
/// no files; the `vouch ca intermediate|root` commands record and write what it returns.
public enum IssuerLifecycle {
    /// A new CA certificate and its private key.
    public struct NewIssuer: Sendable {
        public let certificate: X509Certificate
        public let key: PrivateKey
        /// Where the key is when it was made in a PKCS#11 token (nil: an OpenSSL key, to be written somewhere).
        public let tokenReference: TokenKeyReference?

        public init(certificate: X509Certificate, key: PrivateKey, tokenReference: TokenKeyReference? = nil) {
            self.certificate = certificate
            self.key = key
            self.tokenReference = tokenReference
        }
    }

    /// A new CA key pair: the key, and where it is when a token made it.
    public struct NewKey: Sendable {
        public let key: PrivateKey
        public let tokenReference: TokenKeyReference?

        public init(key: PrivateKey, tokenReference: TokenKeyReference? = nil) {
            self.key = key
            self.tokenReference = tokenReference
        }
    }

    /// Makes the key of a new root (`.root`) or intermediate (`.intermediate`): the command decides
    /// where (a token, or OpenSSL for a key file or the database).
    public typealias MakeKey = (IssuerKind) throws -> NewKey

    /// A P-256 key made by OpenSSL.
    public static func opensslKey(_ kind: IssuerKind) throws -> NewKey { NewKey(key: try PrivateKey(generating: .p256)) }

    /// What `root prepare` makes: R2, I2 under R2, X (I2's subject and key signed by the old
    /// root, sent after I2 in chains) and E (R2's subject and key signed by the old root: the
    /// proof an agent needs to add R2, never in a chain).
    public struct PreparedRoot: Sendable {
        public let root: NewIssuer
        public let intermediate: NewIssuer
        public let cross: X509Certificate
        public let endorsement: X509Certificate
    }

    static let year: TimeInterval = 365 * 24 * 3600
    static let intermediateLifetime = 5 * year
    static let rootLifetime = 10 * year
    /// Backdated a minute, as `ca init` does, for clocks slightly behind.
    static let backdating: TimeInterval = 60

    /// A P-256 intermediate under `root` (pathlen 0), living 5 years or until the root expires.
    /// - Parameter takenNames: common names already in use; a second one the same day gets a suffix,
    ///   so tools that look issuers up by name never confuse two keys.
    public static func intermediate(under root: CertificateSigner, now: Date, takenNames: Set<String> = [],
                                    makeKey: MakeKey = opensslKey) throws -> NewIssuer {
        try intermediate(under: root, named: uniqueName("Vouch Intermediate CA \(day(now))", taken: takenNames), now: now, makeKey: makeKey)
    }

    private static func intermediate(under root: CertificateSigner, named name: String, now: Date, makeKey: MakeKey) throws -> NewIssuer {
        let made = try makeKey(.intermediate)
        let certificate = try root.sign(publicKeyOf: made.key, template: CertificateTemplate(
            role: .authority(pathLength: 0), serial: try SerialNumber.random(), subject: subject(name),
            notBefore: now.addingTimeInterval(-backdating),
            notAfter: min(now.addingTimeInterval(intermediateLifetime), root.certificate.notAfter)))
        return NewIssuer(certificate: certificate, key: made.key, tokenReference: made.tokenReference)
    }

    /// R2 (self-signed, 10 years, pathlen 1), I2 under it, and X and E signed by `oldRoot`;
    /// X and E never outlive the old root.
    public static func prepareRoot(oldRoot: CertificateSigner, now: Date, takenNames: Set<String> = [],
                                   makeKey: MakeKey = opensslKey) throws -> PreparedRoot {
        let madeRoot = try makeKey(.root)
        let rootKey = madeRoot.key
        let rootSubject = subject(uniqueName("Vouch Root CA \(day(now))", taken: takenNames))
        let notBefore = now.addingTimeInterval(-backdating)
        let rootTemplate = CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: rootSubject,
            notBefore: notBefore, notAfter: now.addingTimeInterval(rootLifetime))
        let root = try CertificateSigner.selfSigned(key: rootKey, template: rootTemplate)
        let rootSigner = try CertificateSigner(certificate: root, key: rootKey)

        let intermediateName = uniqueName("Vouch Intermediate CA \(day(now))", taken: takenNames)
        let intermediate = try Self.intermediate(under: rootSigner, named: intermediateName, now: now, makeKey: makeKey)
        let oldRootEnd = oldRoot.certificate.notAfter
        // Same subject and key as I2, so a verifier holding only the old root can build L2 → X → R1.
        let cross = try oldRoot.sign(publicKeyOf: intermediate.key, template: CertificateTemplate(
            role: .authority(pathLength: 0), serial: try SerialNumber.random(), subject: subject(intermediateName),
            notBefore: notBefore, notAfter: min(intermediate.certificate.notAfter, oldRootEnd)))
        let endorsement = try oldRoot.sign(publicKeyOf: rootKey, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: rootSubject,
            notBefore: notBefore, notAfter: min(root.notAfter, oldRootEnd)))
        return PreparedRoot(root: NewIssuer(certificate: root, key: rootKey, tokenReference: madeRoot.tokenReference), intermediate: intermediate,
                            cross: cross, endorsement: endorsement)
    }

    /// Whether `key` is the private half of `root`'s public key: the operator's root key file must
    /// be the active root's, not another CA's or an old one's.
    public static func rootSigner(_ root: X509Certificate, key: PrivateKey, keyPath: String) throws -> CertificateSigner {
        guard root.matches(key) else {
            throw AuthorityError(.failedPrecondition, "\(keyPath) is not the key of the active root \(root.serialHex)")
        }
        return try CertificateSigner(certificate: root, key: key)
    }

    static func subject(_ commonName: String) -> [(String, String)] { [("O", "Vouch"), ("CN", commonName)] }

    /// `base`, or `base (2)`, `base (3)`… when taken.
    static func uniqueName(_ base: String, taken: Set<String>) -> String {
        guard taken.contains(base) else { return base }
        var n = 2
        while taken.contains("\(base) (\(n))") { n += 1 }
        return "\(base) (\(n))"
    }

    /// The UTC day, e.g. 2026-11-27.
    static func day(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!).year().month().day())
    }
}
