import Foundation
import VouchAuthority
import VouchCrypto
import VouchTLS

/// Writes an issued identity into the agent's directory, each file atomically.
struct IdentityWriter {
    let files: IdentityFiles

    func write(leaf: X509Certificate, key: PrivateKey, chain: [X509Certificate], roots: [X509Certificate]) throws {
        try FileManager.default.createDirectory(atPath: files.directory, withIntermediateDirectories: true)
        try AtomicFile.write(pemBundle(roots), to: files.bundle)
        try AtomicFile.write(pemBundle(chain), to: files.chain)
        // Key before certificate: svid.pem changing last is the signal that a rotation is complete.
        try AtomicFile.write(try key.pkcs8PEM(), to: files.key, mode: 0o600)
        try AtomicFile.write(leaf.pem, to: files.certificate)
    }
}
