import Foundation
import VouchCrypto

/// Certificates the CA issues on its own host, with its key, outside any request: the
/// server's and the admins' identities, which no token or renewal can grant.
public enum LocalIssuance {
    public struct Issued {
        public let certificate: X509Certificate
        public let key: PrivateKey
        public let record: CertificateRecord
    }

    /// A leaf's subject: `O=Vouch, CN=<SPIFFE ID>` when the ID fits a common name (64 bytes,
    /// X.520's ub-common-name), else `O=Vouch` alone. PostgreSQL's `cert` authentication and
    /// `clientcert=verify-full` map only the CN (or the whole DN) to a user; the SAN stays the identity.
    public static func leafSubject(spiffeID: String) -> [(String, String)] {
        spiffeID.utf8.count <= 64 ? [("O", "Vouch"), ("CN", spiffeID)] : [("O", "Vouch")]
    }

    /// A P-256 leaf for `spiffeID` (plus DNS/IP SANs) signed by `signer`, valid from a minute ago.
    public static func issue(signer: CertificateSigner, spiffeID: String, dnsNames: [String] = [], ipAddresses: [String] = [],
                             lifetime: TimeInterval, now: Date) throws -> Issued {
        let key = try PrivateKey(generating: .p256)
        let notAfter = min(now.addingTimeInterval(lifetime), signer.certificate.notAfter)
        let certificate = try signer.sign(publicKeyOf: key, template: CertificateTemplate(
            role: .leaf, serial: try SerialNumber.random(), subject: leafSubject(spiffeID: spiffeID),
            notBefore: now.addingTimeInterval(-60), notAfter: notAfter,
            subjectAltNames: SubjectAltNames(uris: [spiffeID], dnsNames: dnsNames, ipAddresses: ipAddresses)))
        let record = CertificateRecord(serial: certificate.serialHex, spiffeID: spiffeID, dnsNames: dnsNames,
                                       ipAddresses: ipAddresses, notBefore: certificate.notBefore,
                                       notAfter: certificate.notAfter, issuedAt: now, der: certificate.der)
        return Issued(certificate: certificate, key: key, record: record)
    }

    /// An admin client certificate for `spiffeID` in the CA's trust domain, signed by `signer` (the
    /// intermediate that signs now, as `vouch ca admin-cert` finds it in the database). The server
    /// treats it as an admin once the ID is its init admin or listed with `--admin-id`.
    public static func adminCertificate(signer: CertificateSigner, trustDomain: String, spiffeID: String,
                                        lifetime: TimeInterval, now: Date) throws -> Issued {
        try IssuancePolicy(trustDomain: trustDomain).validateSPIFFEID(spiffeID)
        guard spiffeID != IssuancePolicy.serverID(trustDomain: trustDomain) else {
            throw AuthorityError(.invalidArgument, "\(spiffeID) is the CA server's own identity, not an admin's")
        }
        return try issue(signer: signer, spiffeID: spiffeID, lifetime: lifetime, now: now)
    }
}
