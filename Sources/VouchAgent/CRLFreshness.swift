import Foundation
import VouchCrypto
import VouchTLS

extension CertificateRevocationList {
    /// A CRL whose thisUpdate is further ahead than this is not believed (a CA clock running fast,
    /// or a CRL dated to outlive its successors).
    static let clockSkew: TimeInterval = 300

    /// The checks every CRL the agent keeps passes, whoever signed it (an intermediate or a root):
    /// a CRL number, a nextUpdate still ahead and a thisUpdate not dated ahead. Returns the number;
    /// `issuer` ("root 3c…") names the signer in the refusal.
    func freshNumber(now: Date, issuer: String? = nil) throws -> Int64 {
        guard let number else {
            throw IdentityRejected(issuer.map { "the CRL of \($0) has no CRL number" } ?? "CRL has no CRL number")
        }
        let name = issuer.map { "the CRL \(number) of \($0)" } ?? "CRL \(number)"
        guard let next = nextUpdate, next > now else {
            throw IdentityRejected("\(name) is stale (nextUpdate \(nextUpdate.map { "\($0)" } ?? "missing") has passed)")
        }
        guard thisUpdate <= now.addingTimeInterval(Self.clockSkew) else {
            throw IdentityRejected("\(name) has thisUpdate \(thisUpdate) in the future")
        }
        return number
    }
}
