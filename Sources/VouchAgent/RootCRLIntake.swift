import Foundation
import VouchCrypto
import VouchTLS
import X509

/// The CRLs the roots of bundle.pem sign (they list revoked intermediates), which the CA pushes in
/// its trust bundle and answers to GetCRL(issuer: root serial). The agent keeps one per root as
/// crl-<root serial>.der for crl.pem: nginx, HAProxy and PostgreSQL check the whole chain and
/// refuse every client without the root's CRL. Only a CRL signed by a root the agent trusts, not
/// past its nextUpdate and not older (CRL number) than the one held is kept.
struct RootCRLIntake {
    let files: IdentityFiles

    /// A root CRL lists revoked intermediates and cross certificates: a few KiB.
    static let maximumBytes = 256 * 1024

    func path(for root: Certificate) -> String { files.directory + "/crl-\(root.serialHex).der" }

    /// The offered CRLs to save, each newer than the one held from its root, as (path, DER); and
    /// why each other one was refused (an offered copy of the CRL held is neither).
    func newer(_ offered: [[UInt8]], roots: [Certificate], now: Date) -> (files: [(path: String, der: [UInt8])], refused: [String]) {
        var accepted: [String: (der: [UInt8], number: Int64)] = [:]
        var refused: [String] = []
        for der in offered {
            do {
                guard let (path, number) = try check(der, roots: roots, now: now) else { continue }
                if let other = accepted[path], other.number >= number { continue }
                accepted[path] = (der, number)
            } catch {
                refused.append("\(error)")
            }
        }
        return (accepted.sorted { $0.key < $1.key }.map { ($0.key, $0.value.der) }, refused)
    }

    /// The path and number of a root CRL newer than the one held, nil when it is the one held.
    private func check(_ der: [UInt8], roots: [Certificate], now: Date) throws -> (String, Int64)? {
        guard der.count <= Self.maximumBytes else { throw IdentityRejected("a root CRL of \(der.count) bytes was ignored") }
        let crl = try CertificateRevocationList(der: der)
        guard let root = roots.first(where: { root in (try? X509Certificate(der: root.der)).map { crl.isSigned(by: $0) } ?? false }) else {
            throw IdentityRejected("a root CRL not signed by a root in bundle.pem was ignored")
        }
        let number = try crl.freshNumber(now: now, issuer: "root \(root.serialHex)")
        let path = path(for: root)
        if let data = FileManager.default.contents(atPath: path), let held = try? CertificateRevocationList(der: Array(data)),
           let heldNumber = held.number, held.isSigned(by: try X509Certificate(der: root.der)) {
            guard number >= heldNumber else {
                throw IdentityRejected("the CRL \(number) of root \(root.serialHex) is older than the \(heldNumber) held")
            }
            if number == heldNumber {
                guard der == held.der else { throw IdentityRejected("the CRL number \(number) of root \(root.serialHex) was reused for a different CRL") }
                return nil
            }
        }
        return (path, number)
    }

    /// The names of the saved root CRLs of `roots` (RevocationFollower leaves them alone).
    func fileNames(_ roots: [Certificate]) -> Set<String> {
        Set(roots.map { "crl-\($0.serialHex).der" })
    }
}
