import Foundation
import Synchronization
import VouchCrypto
import VouchTLS
import X509

/// What the CRLs held from the roots (crl-<root serial>.der, `RootCRLIntake`) revoke, for the
/// agent's listener: a client chain through an intermediate its root revoked is refused, although
/// the client presents that intermediate itself. Whichever part of the agent saved a root's CRL
/// (trust bundle, CRL refresh, a new identity), the next handshake sees it: a file is read again
/// once it changed (CRLs are replaced by rename).
final class RootCRLRevocations: Sendable {
    private struct Held {
        var stamp: [Int]
        var revoked: Set<String>
    }

    let files: IdentityFiles
    private let held = Mutex<[String: Held]>([:])

    init(files: IdentityFiles) { self.files = files }

    /// Whether `issuer`'s CRL held lists `certificate`'s serial. A file that does not verify
    /// against `issuer` lists nothing (only verified CRLs are saved).
    func isRevoked(_ certificate: Certificate, by issuer: Certificate) -> Bool {
        let path = RootCRLIntake(files: files).path(for: issuer)
        var info = stat()
        guard stat(path, &info) == 0 else {
            held.withLock { $0[path] = nil }
            return false
        }
        let stamp = [Int(info.st_ino), Int(info.st_size), Int(info.st_mtim.tv_sec), Int(info.st_mtim.tv_nsec)]
        if let known = held.withLock({ $0[path] }), known.stamp == stamp {
            return known.revoked.contains(certificate.serialHex)
        }
        let revoked = Self.read(path, issuer: issuer)
        held.withLock { $0[path] = Held(stamp: stamp, revoked: revoked) }
        return revoked.contains(certificate.serialHex)
    }

    private static func read(_ path: String, issuer: Certificate) -> Set<String> {
        guard let data = FileManager.default.contents(atPath: path), data.count <= RootCRLIntake.maximumBytes,
              let crl = try? CertificateRevocationList(der: Array(data)),
              let signer = try? X509Certificate(der: issuer.der), crl.isSigned(by: signer) else { return [] }
        return Set(crl.entries.map { SerialNumber.hex($0.serial) })
    }
}
