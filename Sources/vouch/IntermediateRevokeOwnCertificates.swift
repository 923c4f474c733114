import Foundation
import VouchAuthority
import VouchCrypto

/// D/admin.pem and D/server.pem under the intermediate `vouch ca intermediate revoke` is about to
/// revoke: servers refuse a chain through it from then on, so an admin certificate under it locks
/// the operator out (refused unless --force) and a server.pem under it is a fallback clients
/// refuse (a warning). Both are renewed on the CA host from the intermediate that signs now.
struct IntermediateRevokeOwnCertificates {
    let files: CAFiles
    let intermediate: X509Certificate

    /// For an intermediate the revocation would accept (not the signing one, not revoked
    /// already: the revocation refuses those with its own advice); nil otherwise.
    init?(serial: String, snapshot: IssuerSnapshot, files: CAFiles) {
        guard let canonical = SerialNumber.canonicalHex(serial), let record = snapshot.issuer(serial: canonical),
              record.kind == .intermediate, !record.isRevoked, record.state != .active,
              let certificate = try? X509Certificate(der: record.der) else { return nil }
        self.files = files
        self.intermediate = certificate
    }

    /// Why the revocation must wait without --force: admin.pem is under this intermediate.
    var adminRefusal: String? {
        adminUnder.map { "\(files.adminCertificate) (\($0.serialHex)) was issued by intermediate \(intermediate.serialHex): "
            + "renew it first with \(Self.renewal(of: $0, dir: files.directory.path)), or pass --force" }
    }

    /// What to print once the intermediate is revoked (with --force for admin.pem).
    var warnings: [String] {
        let dir = files.directory.path
        var lines: [String] = []
        if let admin = adminUnder {
            lines.append("warning: \(files.adminCertificate) (\(admin.serialHex)) was issued by intermediate \(intermediate.serialHex), "
                + "so servers refuse it now: renew it with \(Self.renewal(of: admin, dir: dir))")
        }
        if let server = issued(files.serverCertificate) {
            lines.append("warning: \(files.serverCertificate) (\(server.serialHex)) was issued by intermediate \(intermediate.serialHex), "
                + "so clients refuse a server that falls back to it: reissue it with vouch ca server-cert --dir \(dir)")
        }
        return lines
    }

    private var adminUnder: X509Certificate? { issued(files.adminCertificate) }

    /// `ca admin-cert` renews admin.pem in place for the same SPIFFE ID.
    private static func renewal(of admin: X509Certificate, dir: String) -> String {
        "vouch ca admin-cert --dir \(dir) --spiffe-id \(admin.spiffeID ?? "ID") --out \(dir)"
    }

    /// The certificate a file holds (its first) when this intermediate's key signed it.
    private func issued(_ path: String) -> X509Certificate? {
        guard let text = try? OperatorFile.text(path, what: "certificate file", limit: 1 << 20),
              let held = try? X509Certificate(pem: text), held.isSigned(by: intermediate) else { return nil }
        return held
    }
}
