import Foundation
import VouchAuthority
import VouchCrypto
import VouchTLS

/// Writes an issued identity into the agent's directory, each file atomically.
struct IdentityWriter {
    let files: IdentityFiles

    func write(leaf: X509Certificate, key: PrivateKey, chain: [X509Certificate], roots: [X509Certificate]) throws {
        try FileManager.default.createDirectory(atPath: files.directory, withIntermediateDirectories: true)
        // All four are written before any is replaced, so a full or read-only disk leaves the old
        // set intact; svid.pem is renamed last, the signal that a rotation is complete.
        try AtomicFile.writeAll([
            (files.bundle, Array(pemBundle(roots).utf8), 0o644),
            (files.chain, Array(pemBundle(chain).utf8), 0o644),
            (files.key, Array(try key.pkcs8PEM().utf8), 0o600),
            (files.certificate, Array(leaf.pem.utf8), 0o644),
        ])
    }
}
