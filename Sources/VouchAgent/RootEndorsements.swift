import Foundation
import VouchTLS
import X509

/// How an agent learns to trust a new root: an *endorsement* is a certificate with the new root's
/// subject and key, signed by a root the agent already trusts (the CA's `root prepare` makes one).
/// Only such a signature adds trust; a root offered alone, a chain through an intermediate, or a
/// root that endorses itself never does.
enum RootEndorsements {
    /// Whether `endorsement` certifies `root`'s subject and key and is a CA certificate.
    static func names(_ endorsement: Certificate, _ root: Certificate) -> Bool {
        endorsement.subject == root.subject && endorsement.publicKey == root.publicKey && IssuedIdentityCheck.isAuthority(endorsement)
    }

    /// Whether the key of `signer` (a subject and key, from a root or an endorsement) signed `certificate`.
    static func isSigned(_ certificate: Certificate, bySubject subject: DistinguishedName, key: Certificate.PublicKey) -> Bool {
        certificate.issuer == subject && key.isValidSignature(certificate.signature, for: certificate)
    }

    /// A root that signed itself (subject = issuer, its own key verifies it) and is a CA certificate.
    static func isSelfSignedAuthority(_ root: Certificate) -> Bool {
        IssuedIdentityCheck.isAuthority(root) && isSigned(root, bySubject: root.subject, key: root.publicKey)
    }

    /// The subjects and keys trusted from `anchors` through `endorsements`, signatures only: an
    /// endorsement that has expired since still links a restarting agent to the roots it proved.
    static func trustedKeys(anchors: [Certificate], endorsements: [Certificate]) -> [(subject: DistinguishedName, key: Certificate.PublicKey)] {
        var trusted = anchors.filter(isSelfSignedAuthority).map { (subject: $0.subject, key: $0.publicKey) }
        var pending = endorsements.filter { IssuedIdentityCheck.isAuthority($0) }
        // Each pass links at least one more endorsement or ends.
        while let index = pending.firstIndex(where: { endorsement in
            trusted.contains { isSigned(endorsement, bySubject: $0.subject, key: $0.key) }
        }) {
            let endorsement = pending.remove(at: index)
            if !trusted.contains(where: { $0.subject == endorsement.subject && $0.key == endorsement.publicKey }) {
                trusted.append((endorsement.subject, endorsement.publicKey))
            }
        }
        return trusted
    }

    /// Whether `root` is self-signed and its subject and key are among `trusted`.
    static func isProven(_ root: Certificate, by trusted: [(subject: DistinguishedName, key: Certificate.PublicKey)]) -> Bool {
        isSelfSignedAuthority(root) && trusted.contains { $0.subject == root.subject && $0.key == root.publicKey }
    }
}
