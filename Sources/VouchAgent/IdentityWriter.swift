import Foundation
import Logging
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
    /// - Parameter crls: CRL files fetched for this identity (`IdentityCRLs`), in crl.pem from this write on.
    func write(_ identity: VerifiedIdentity, key: PrivateKey, bundlePEM: String?, crls: IdentityCRLs = IdentityCRLs()) throws {
        // Every file is written before any is replaced, so a full or read-only disk leaves the old
        // set intact; svid.pem is renamed last, the signal that a rotation is complete.
        var set: [(path: String, bytes: [UInt8], mode: mode_t)] = []
        if let bundlePEM { set.append((files.bundle, Array(bundlePEM.utf8), 0o644)) }
        set += [
            (files.chain, Array(try Certificate.pemBundle(identity.intermediates).utf8), 0o644),
            (files.key, Array(try key.pkcs8PEM().utf8), 0o600),
            (files.certificate, Array(try identity.leaf.pem.utf8), 0o644),
        ]
        // The derived files (fullchain.pem, combined, PKCS#12) are renamed with them, before svid.pem.
        try Self.serialized { try AtomicFile.writeAll(try DerivedFiles(files: files).completing(crls.stillNewer() + set)) }
    }

    /// Writes every derived file from the files on disk, at the agent's start: an upgraded agent or
    /// new `--file` names get them without waiting for a rotation.
    static func writeDerived(_ files: IdentityFiles, logger: Logger) throws {
        try serialized { try AtomicFile.writeAll(try DerivedFiles(files: files, logger: logger).completing([], force: true)) }
    }
}
