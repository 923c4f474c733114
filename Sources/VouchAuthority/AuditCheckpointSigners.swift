import Foundation
import VouchCrypto

extension AuditCheckpoint {
    /// The intermediates whose checkpoints `vouch audit verify` accepts: the CA directory's own,
    /// and every stored intermediate signed by a root it trusts (`IssuerSet.trustedRoots`: the
    /// directory's root and those it endorsed). The issuer table alone proves nothing: whoever
    /// can write the database but holds no CA key could add an intermediate of their own and
    /// sign checkpoints of a rewritten log.
    public static func trustedSigners(root: X509Certificate, intermediate: X509Certificate,
                                      issuers: [IssuerRecord]) -> [X509Certificate] {
        let roots = IssuerSet.trustedRoots(anchor: root, records: issuers)
        let stored = issuers.compactMap { record -> X509Certificate? in
            guard record.kind == .intermediate, let certificate = try? X509Certificate(der: record.der),
                  certificate.der != intermediate.der, roots.contains(where: { certificate.isSigned(by: $0) }) else { return nil }
            return certificate
        }
        return [intermediate] + stored
    }
}
