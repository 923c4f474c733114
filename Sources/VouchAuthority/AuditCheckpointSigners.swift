import Foundation
import VouchCrypto

extension AuditCheckpoint {
    /// The intermediates whose checkpoints `vouch audit verify` accepts: the CA directory's own,
    /// and every stored intermediate signed by a root it trusts. It trusts the directory's root
    /// and, transitively, a stored root that a trusted root endorsed (the endorsement of a root
    /// rollover). The issuer table alone proves nothing: whoever can write the database but holds
    /// no CA key could add an intermediate of their own and sign checkpoints of a rewritten log.
    public static func trustedSigners(root: X509Certificate, intermediate: X509Certificate,
                                      issuers: [IssuerRecord]) -> [X509Certificate] {
        let parsed = issuers.compactMap { record in (try? X509Certificate(der: record.der)).map { (record, $0) } }
        var roots = [root]
        var grew = true
        while grew {
            grew = false
            for (record, endorsement) in parsed where record.kind == .endorsement
                && roots.contains(where: { endorsement.isSigned(by: $0) }) {
                guard let endorsedKey = try? endorsement.publicKeyDER else { continue }
                for (candidate, newRoot) in parsed where candidate.kind == .root
                    && (try? newRoot.publicKeyDER) == endorsedKey && newRoot.isSigned(by: newRoot)
                    && !roots.contains(where: { $0.der == newRoot.der }) {
                    roots.append(newRoot)
                    grew = true
                }
            }
        }
        let stored = parsed.filter { record, certificate in
            record.kind == .intermediate && certificate.der != intermediate.der && roots.contains { certificate.isSigned(by: $0) }
        }
        return [intermediate] + stored.map(\.1)
    }
}
