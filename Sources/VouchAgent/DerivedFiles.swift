import Foundation
import Logging
import Metrics
import Synchronization
import VouchCrypto
import VouchTLS
import X509

/// The files computed from the agent's own (leaf, key, chain, bundle, CRLs) for servers that want
/// them in another shape: fullchain (leaf + chain.pem), combined (fullchain + key), crl (every CRL
/// held, PEM), pkcs12 (keystore) and truststore. They are added to the write that changes their
/// inputs, so a reader never sees a fullchain of one certificate next to the key of another.
struct DerivedFiles {
    typealias FileSet = [(path: String, bytes: [UInt8], mode: mode_t)]

    let files: IdentityFiles
    var logger = Logger(label: "vouch.agent")

    /// Roots already named in the missing-CRL warning (said once per root and process).
    private static let warnedRoots = Mutex(Set<String>())
    /// The earliest nextUpdate of the CRLs in crl.pem, for the gauge.
    private static let earliestNextUpdate = Mutex<Date?>(nil)
    private static let crlExpiryGauge = Gauge(label: "vouch_agent_crl_expires_in_seconds")

    /// `set` followed by every derived file, computed from the directory as it will be once `set`
    /// is written and the files in `removing` are gone; the certificate (svid.pem) stays last, the
    /// sign that the set is complete. A derived file whose bytes would not change is left out,
    /// unless `force` (the agent's start: a new version or new names write them all).
    /// Call it inside `IdentityWriter.serialized`, so nothing changes the inputs meanwhile.
    func completing(_ set: FileSet, removing: Set<String> = [], force: Bool = false) throws -> FileSet {
        let pending = Dictionary(set.map { ($0.path, $0.bytes) }, uniquingKeysWith: { _, last in last })
        func contents(_ path: String) -> [UInt8]? {
            if let bytes = pending[path] { return bytes }
            if removing.contains(path) { return nil }
            return FileManager.default.contents(atPath: path).map { Array($0) }
        }
        func text(_ path: String) -> String { contents(path).map { String(decoding: $0, as: UTF8.self) } ?? "" }
        let touched = { (kinds: [OutputFileNames.Kind]) in force || kinds.contains { files.path($0).map { pending[$0] != nil } ?? false } }

        let certificatePEM = Self.endingInNewline(text(files.certificate)), chainPEM = text(files.chain)
        let keyPEM = text(files.key), bundlePEM = text(files.bundle)
        var derived: FileSet = []
        func add(_ kind: OutputFileNames.Kind, regenerate: Bool = true, _ bytes: () throws -> [UInt8]) rethrows {
            guard let path = files.path(kind) else { return }
            let exists = FileManager.default.fileExists(atPath: path)
            guard regenerate || !exists else { return }
            let new = try bytes()
            if !force, exists, contents(path) == new { return }
            derived.append((path, new, kind.mode))
        }
        let hasIdentity = !certificatePEM.isEmpty && !keyPEM.isEmpty
        if hasIdentity {
            add(.fullchain) { Array((certificatePEM + chainPEM).utf8) }
            add(.combined) { Array((certificatePEM + chainPEM + Self.endingInNewline(keyPEM)).utf8) }
            if let password = files.keystorePassword {
                // PKCS#12 files differ at each write (fresh salts): rebuilt only when an input changed.
                try add(.pkcs12, regenerate: touched([.certificate, .key, .chain])) {
                    try PKCS12.keystore(keyPEM: keyPEM, certificatePEM: certificatePEM, chainPEM: chainPEM, password: password)
                }
            }
        }
        if let password = files.keystorePassword, !bundlePEM.isEmpty {
            try add(.truststore, regenerate: touched([.bundle])) { try PKCS12.truststore(rootsPEM: bundlePEM, password: password) }
        }
        if files.path(.crl) != nil {
            let crls = crlFiles(pending: pending, removing: removing).compactMap { path in contents(path).map { (path, $0) } }
            add(.crl) { crls.map { PEM.encode($0.1, label: "X509 CRL") }.joined().utf8.map { $0 } }
            Self.earliestNextUpdate.withLock { $0 = crls.compactMap { try? CertificateRevocationList(der: $0.1).nextUpdate }.min() }
        }
        let isCertificate = { (file: (path: String, bytes: [UInt8], mode: mode_t)) in file.path == files.certificate }
        return set.filter { !isCertificate($0) } + derived + set.filter(isCertificate)
    }

    /// The DER CRLs the agent holds (crl.der, then crl-<issuer serial>.der by name), as they will be.
    private func crlFiles(pending: [String: [UInt8]], removing: Set<String>) -> [String] {
        let path = { (name: String) in files.directory + "/" + name }
        let onDisk = (try? FileManager.default.contentsOfDirectory(atPath: files.directory)) ?? []
        let pendingHere = pending.keys.map { ($0 as NSString).lastPathComponent }.filter { pending[path($0)] != nil }
        let names = Set(onDisk + pendingHere).filter { !removing.contains(path($0)) }
        let others = names.filter { $0.hasPrefix("crl-") && $0.hasSuffix(".der") }.sorted()
        return ((names.contains("crl.der") ? ["crl.der"] : []) + others).map(path)
    }

    /// After the agent asked the CA for its roots' CRLs: warns once per root of `roots` whose CRL
    /// crl.pem lacks (a CA that has not signed one yet, or an older CA).
    func warnMissingRootCRLs(_ roots: [Certificate]) {
        guard files.path(.crl) != nil else { return }
        for root in roots where !FileManager.default.fileExists(atPath: RootCRLIntake(files: files).path(for: root)) {
            guard Self.warnedRoots.withLock({ $0.insert(root.serialHex).inserted }) else { continue }
            logger.warning("\(Self.missingRootCRL(root.serialHex))")
        }
    }

    static func missingRootCRL(_ serial: String) -> String {
        "crl.pem has no CRL from root \(serial): servers that check CRLs for the whole chain refuse every client "
            + "until the CA publishes one (vouch ca root crl)"
    }

    /// Sets `vouch_agent_crl_expires_in_seconds` (seconds until the earliest nextUpdate in crl.pem).
    static func refreshGauge(now: Date) {
        if let earliest = earliestNextUpdate.withLock({ $0 }) { crlExpiryGauge.record(earliest.timeIntervalSince(now)) }
    }

    private static func endingInNewline(_ text: String) -> String {
        text.isEmpty || text.hasSuffix("\n") ? text : text + "\n"
    }
}
