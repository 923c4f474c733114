import Foundation
import Synchronization
import VouchCrypto
import VouchFiles
import VouchTLS
import X509

/// Writes a verified identity into the agent's directory, all files or none.
struct IdentityWriter {
    let files: IdentityFiles

    /// Writes to the identity directory, one at a time: a renewal and a trust bundle update both
    /// write chain.pem, and each must see the other's files before it writes its own.
    private static let writes = Mutex(())

    static func serialized<Result>(_ body: () throws -> Result) throws -> Result {
        try writes.withLock { _ in try body() }
    }

    /// - Parameter bundlePEM: new trust roots, or nil to keep bundle.pem as it is (renewal:
    ///   roots change only when already trusted, so a CA answer never replaces them).
    func write(_ identity: VerifiedIdentity, key: PrivateKey, bundlePEM: String?) throws {
        // Every file is written before any is replaced, so a full or read-only disk leaves the old
        // set intact; svid.pem is renamed last, the signal that a rotation is complete.
        var set: [(path: String, bytes: [UInt8], mode: mode_t)] = []
        if let bundlePEM { set.append((files.bundle, Array(bundlePEM.utf8), 0o644)) }
        set += [
            (files.chain, Array(try Certificate.pemBundle(identity.intermediates).utf8), 0o644),
            (files.key, Array(try key.pkcs8PEM().utf8), 0o600),
            (files.certificate, Array(try identity.leaf.pem.utf8), 0o644),
        ]
        try Self.serialized { try AtomicFile.writeAll(set) }
    }
}
