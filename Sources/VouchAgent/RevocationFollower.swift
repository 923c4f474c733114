import Foundation
import GRPCCore
import Logging
import Synchronization
import VouchAPI
import VouchCrypto
import VouchFiles
import VouchTLS
import X509

/// Keeps the set of revoked serials the agent's listener refuses. Only a verified CRL
/// fills it: signed by an issuing CA that chains to the agent's roots, not older (CRL
/// number) than the one held from that issuer, and not past its nextUpdate. WatchRevocations
/// events are hints that make the next CRL fetch immediate (a revoked client is refused within a
/// second); the CRLs are also fetched every `refreshInterval` and kept on disk so a restart while
/// the CA is down still refuses revoked clients. After an intermediate rotation the CA has several
/// issuers, each signing its own CRL: the active one's is `crl.der`, each other one's
/// (`ca_intermediates.pem`) `crl-<issuer serial>.der`, and a serial listed in any of them is refused. With several CA replicas,
/// the stream and the CRL fetch move to the next one when one stops answering; the stream
/// resumes there after the last sequence seen, so no revocation is missed.
public final class RevocationFollower: RevocationStatus {
    /// The CRL held from one issuer (keyed by the issuer's public key: an intermediate and its
    /// cross certificate sign as one).
    private struct IssuerCRL {
        var revoked: Set<String>
        /// A new CRL from this issuer must not have a lower number.
        var number: Int64
        var der: [UInt8]
        /// Where it is saved.
        var path: String
    }

    private struct State {
        var crls: [[UInt8]: IssuerCRL] = [:]
        /// The key of the issuer whose CRL `GetCRL` answers by default (crl.der).
        var activeKey: [UInt8]?
        var lastSequence: Int64 = 0
    }

    private let state = Mutex(State())
    let files: IdentityFiles
    let replicas: CAReplicas
    let source: any RevocationSource
    let refreshInterval: Duration
    let clock: any AgentClock
    let logger: Logger
    /// Revocation events are sent by the CA at will; their log lines are rate-limited.
    private let eventLog = RateLimitedLog(burst: 10, perSecond: 1)
    /// Wakes the CRL loop early (after a streamed revocation).
    private let refreshNow = WakeSignal()
    /// Told when a CRL file the agent writes changed on disk (the hooks).
    let onFilesChanged: @Sendable (FileChange) -> Void

    /// Event fields beyond these are not a Vouch serial or SPIFFE ID; such events are dropped.
    static let maxSerialHexDigits = 40
    static let maxSPIFFEIDBytes = 2048

    public var crlPath: String { files.directory + "/crl.der" }

    init(files: IdentityFiles, replicas: CAReplicas, source: any RevocationSource, refreshInterval: Duration,
         clock: any AgentClock, logger: Logger, onFilesChanged: @escaping @Sendable (FileChange) -> Void = { _ in }) {
        self.files = files
        self.replicas = replicas
        self.source = source
        self.refreshInterval = refreshInterval
        self.clock = clock
        self.logger = logger
        self.onFilesChanged = onFilesChanged
    }

    /// Follows one CA over gRPC.
    convenience init(files: IdentityFiles, address: HostPort, bundlePath: String, server: CAServerIdentity, refreshInterval: Duration,
                     rpcTimeout: Duration, clock: any AgentClock, logger: Logger) {
        self.init(files: files, replicas: CAReplicas(CAAddressList(address), logger: logger),
                  source: GRPCRevocationSource(bundlePath: bundlePath, server: server, rpcTimeout: rpcTimeout),
                  refreshInterval: refreshInterval, clock: clock, logger: logger)
    }

    /// The last revocation sequence seen; a new stream resumes after it.
    var lastSequence: Int64 { state.withLock { $0.lastSequence } }

    /// Whether `serial` is in any verified CRL held.
    public func isRevoked(_ serial: String) -> Bool {
        state.withLock { $0.crls.values.contains { $0.revoked.contains(serial) } }
    }

    /// The number of the active issuer's CRL held, if any.
    public var heldNumber: Int64? { state.withLock { state in state.activeKey.flatMap { state.crls[$0]?.number } } }

    /// The CRL numbers held, by the path each CRL is saved at.
    var heldNumbers: [String: Int64] {
        state.withLock { Dictionary($0.crls.values.map { ($0.path, $0.number) }, uniquingKeysWith: max) }
    }

    /// The saved CRL of another issuer than the active one.
    func crlPath(issuer serial: String) -> String { files.directory + "/crl-\(serial).der" }

    /// Loads the CRLs saved by an earlier run whose signatures verify. A saved CRL past its
    /// nextUpdate is still kept (it is the newest list known) until a fresh one arrives.
    func loadSavedCRL() async {
        // The roots' CRLs (crl-<root serial>.der) are kept for crl.pem only (`RootCRLIntake`).
        let rootCRLs = RootCRLIntake(files: files).fileNames(heldRoots())
        let others = ((try? FileManager.default.contentsOfDirectory(atPath: files.directory)) ?? [])
            .filter { $0.hasPrefix("crl-") && $0.hasSuffix(".der") && !rootCRLs.contains($0) }.sorted().map { files.directory + "/" + $0 }
        for path in [crlPath] + others {
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            do {
                let (crl, key) = try await verifiedCRL(Array(data))
                if let next = crl.nextUpdate, next <= clock.now {
                    logger.warning("saved CRL is past its nextUpdate; keeping it until a fresh one arrives",
                                   metadata: ["number": "\(crl.number ?? -1)", "next_update": "\(next)", "file": "\(path)"])
                }
                hold(crl, key: key, path: path)
                logger.info("loaded saved CRL", metadata: ["number": "\(crl.number ?? -1)", "revoked": "\(crl.entries.count)", "file": "\(path)"])
            } catch {
                logger.warning("ignoring saved CRL", metadata: ["error": "\(error)", "file": "\(path)"])
            }
        }
    }

    /// The intermediates that may sign a CRL: those in chain.pem and ca_intermediates.pem that
    /// chain to the roots in bundle.pem.
    private func trustedIssuers() async throws -> [Certificate] {
        let roots = try Certificate.all(inPEM: String(contentsOfFile: files.bundle, encoding: .utf8))
        let intermediates = try Certificate.all(inPEM: String(contentsOfFile: files.chain, encoding: .utf8))
            + Certificate.all(inPEM: IdentityFiles.optionalText(files.caIntermediates))
        return await IssuedIdentityCheck.trustedIssuers(AgentTrust.unique(intermediates), roots: roots,
                                                        limit: TrustBundleUpdate.maximumIntermediates + IssuedIdentityCheck.maximumIntermediates)
    }

    /// Parses `der` and checks its signature: the signer must be a trusted issuer (`trustedIssuers`);
    /// returns the CRL and its signer's key.
    private func verifiedCRL(_ der: [UInt8]) async throws -> (CertificateRevocationList, key: [UInt8]) {
        let crl = try CertificateRevocationList(der: der)
        let issuers = try await trustedIssuers().map { try X509Certificate(der: $0.der) }
        guard let signer = issuers.first(where: { crl.isSigned(by: $0) }) else {
            throw IdentityRejected("CRL is not signed by an issuing CA that chains to the agent's roots")
        }
        guard crl.number != nil else { throw IdentityRejected("CRL has no CRL number") }
        return (crl, Array(CertificateDER.subjectPublicKeyInfo(signer.der) ?? []))
    }

    /// Checks a fetched CRL against the one held from the same issuer: newer or the same, and fresh.
    func accept(_ der: [UInt8], now: Date? = nil) async throws -> (crl: CertificateRevocationList, changed: Bool) {
        let (crl, _, changed) = try await acceptKeyed(der, now: now)
        return (crl, changed)
    }

    private func acceptKeyed(_ der: [UInt8], now: Date? = nil) async throws -> (crl: CertificateRevocationList, key: [UInt8], changed: Bool) {
        let now = now ?? clock.now
        let (crl, key) = try await verifiedCRL(der)
        let number = crl.number ?? -1
        let held = state.withLock { (number: $0.crls[key]?.number, der: $0.crls[key]?.der ?? []) }
        if let heldNumber = held.number {
            guard number >= heldNumber else {
                throw IdentityRejected("CRL number \(number) is lower than the \(heldNumber) held")
            }
            if number == heldNumber {
                guard der == held.der else { throw IdentityRejected("CRL number \(number) reused for a different CRL") }
            }
        }
        _ = try crl.freshNumber(now: now)
        return (crl, key, number != held.number)
    }

    func confirmRevoked(_ serial: String) async -> Bool {
        do {
            try await refreshCRL()
        } catch {
            logger.warning("could not fetch the CRL to confirm a revocation", metadata: ["error": "\(describe(error))"])
        }
        return isRevoked(serial)
    }

    /// The number of the CRL held from the issuer with this key (its SubjectPublicKeyInfo), if any.
    func heldNumber(key: [UInt8]) -> Int64? { state.withLock { $0.crls[key]?.number } }

    /// Holds a CRL that a new identity's write saved at `path` (`crls(for:)`), as `take` does after
    /// its own write; the CRL that was at crl.der before now lives at `previous`.
    func adopt(_ crl: CertificateRevocationList, key: [UInt8], path: String, previous: (path: String, key: [UInt8])?) {
        if let previous { state.withLock { $0.crls[previous.key]?.path = previous.path } }
        hold(crl, key: key, path: path)
    }

    private func hold(_ crl: CertificateRevocationList, key: [UInt8], path: String) {
        let serials = Set(crl.entries.map { SerialNumber.hex($0.serial) })
        let number = crl.number ?? -1
        state.withLock {
            if path == crlPath { $0.activeKey = key }
            // Checked again under the lock: a CRL verified meanwhile may be newer than this one.
            if let held = $0.crls[key]?.number, number < held || (number == held && $0.crls[key]?.path == path) { return }
            // A CRL saved under another name before (crl.der before a rotation) keeps the newer name.
            $0.crls[key] = IssuerCRL(revoked: serials, number: number, der: crl.der, path: path)
        }
    }

    /// Fetches, verifies and (when newer) saves the CA's CRLs, from the first replica that answers:
    /// the active issuer's, then each other issuer's in ca_intermediates.pem. Issuers no longer
    /// trusted are forgotten and their files removed.
    func refreshCRL() async throws {
        try await take(try await replicas.call("GetCRL") { try await source.crl(from: $0, issuer: "") })
        let activeKey = state.withLock { $0.activeKey }
        var keys = Set(activeKey.map { [$0] } ?? [])
        for issuer in try await otherIssuers() {
            let key = Array(CertificateDER.subjectPublicKeyInfo(try issuer.der) ?? []), serial = issuer.serialHex
            keys.insert(key)
            guard key != activeKey else { continue }
            do {
                try await take(try await replicas.call("GetCRL") { try await source.crl(from: $0, issuer: serial) }, path: crlPath(issuer: serial))
            } catch let error as RPCError where error.code == .notFound {
                // A prepared issuer signs no CRL until it is activated.
                logger.debug("the CA has no CRL of this issuer yet", metadata: ["issuer": "\(serial)"])
            } catch let error where isShutdown(error) {
                throw error
            } catch {
                logger.warning("CRL refresh of an issuer failed; keeping the last one", metadata: [
                    "issuer": "\(serial)", "error": "\(describe(error))"])
            }
        }
        forget(keysOtherThan: keys)
        try await refreshRootCRLs()
    }

    /// One issuer per key in ca_intermediates.pem that chains to the held roots: for an
    /// intermediate and its cross certificate (same key), the one under the newest root.
    private func otherIssuers() async throws -> [Certificate] {
        let roots = try Certificate.all(inPEM: String(contentsOfFile: files.bundle, encoding: .utf8))
        let candidates = try Certificate.all(inPEM: IdentityFiles.optionalText(files.caIntermediates))
        var chosen: [Certificate.PublicKey: (issuer: Certificate, rootNotBefore: Date)] = [:]
        for candidate in AgentTrust.unique(candidates) where IssuedIdentityCheck.isAuthority(candidate) {
            var verifier = Verifier(rootCertificates: CertificateStore(roots)) { RFC5280Policy(validationTime: clock.now) }
            guard case .validCertificate(let chain) = await verifier.validate(leaf: candidate, intermediates: CertificateStore([])),
                  let root = chain.last else { continue }
            if let held = chosen[candidate.publicKey], held.rootNotBefore >= root.notValidBefore { continue }
            chosen[candidate.publicKey] = (candidate, root.notValidBefore)
        }
        return chosen.values.map(\.issuer).sorted { $0.serialHex < $1.serialHex }
    }

    /// Before crl.der takes another issuer's CRL (the active intermediate changed), the CRL it held
    /// is saved under its issuer's serial, so a restart before that issuer's next fetch still has it:
    /// where, and what, to write in the same set as the new crl.der.
    func previousActive(besides key: [UInt8]) async -> (path: String, der: [UInt8], key: [UInt8])? {
        guard let previous = state.withLock({ state in state.crls.first { $0.value.path == crlPath && $0.key != key } }),
              let issuers = try? await trustedIssuers(),
              let issuer = issuers.first(where: { (try? $0.der).flatMap(CertificateDER.subjectPublicKeyInfo).map(Array.init) == previous.key })
        else { return nil }
        return (crlPath(issuer: issuer.serialHex), previous.value.der, previous.key)
    }

    /// Writes CRL files with crl.pem (and the other derived files) in one set, removing `removing`.
    private func writeCRLs(_ set: DerivedFiles.FileSet, removing: Set<String> = []) throws {
        try IdentityWriter.serialized {
            try AtomicFile.writeAll(try DerivedFiles(files: files, logger: logger).completing(set, removing: removing))
            for path in removing { unlink(path) }
        }
    }

    /// The roots of bundle.pem (none when it cannot be read).
    private func heldRoots() -> [Certificate] {
        (try? Certificate.all(inPEM: String(contentsOfFile: files.bundle, encoding: .utf8))) ?? []
    }

    /// Fetches each bundle root's CRL (GetCRL with the root's serial) and saves the newer ones with
    /// crl.pem. A CA without a CRL for a root answers NOT_FOUND: crl.pem is written all the same.
    private func refreshRootCRLs() async throws {
        var offered: [[UInt8]] = []
        for root in heldRoots() {
            do {
                offered.append(try await replicas.call("GetCRL") { try await source.crl(from: $0, issuer: root.serialHex) })
            } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
                logger.debug("the CA has no CRL of this root", metadata: ["root": "\(root.serialHex)", "error": "\(error.message)"])
            } catch let error where isShutdown(error) {
                throw error
            } catch {
                logger.warning("root CRL refresh failed; keeping the last one", metadata: [
                    "root": "\(root.serialHex)", "error": "\(describe(error))"])
            }
        }
        if try takeRootCRLs(offered) { onFilesChanged(.crl) }
        DerivedFiles(files: files, logger: logger).warnMissingRootCRLs(heldRoots())
    }

    /// Saves the offered root CRLs newer than those held (`RootCRLIntake`) with crl.pem; whether any was.
    func takeRootCRLs(_ offered: [[UInt8]]) throws -> Bool {
        guard !offered.isEmpty else { return false }
        return try IdentityWriter.serialized {
            let result = RootCRLIntake(files: files).newer(offered, roots: heldRoots(), now: clock.now)
            for reason in result.refused { logger.notice("\(reason)") }
            guard !result.files.isEmpty else { return false }
            try AtomicFile.writeAll(try DerivedFiles(files: files, logger: logger).completing(result.files.map { ($0.path, $0.der, 0o644) }))
            logger.info("root CRL updated", metadata: ["files": "\(result.files.map { ($0.path as NSString).lastPathComponent }.joined(separator: ","))"])
            return true
        }
    }

    /// Drops the CRLs of issuers the agent no longer trusts, and their files.
    private func forget(keysOtherThan keys: Set<[UInt8]>) {
        let dropped: [String] = state.withLock { state in
            let gone = state.crls.filter { !keys.contains($0.key) }
            for key in gone.keys { state.crls[key] = nil }
            return gone.values.map(\.path).filter { $0 != crlPath }
        }
        guard !dropped.isEmpty else { return }
        do {
            try writeCRLs([], removing: Set(dropped))
        } catch {
            logger.warning("could not rewrite crl.pem without the CRLs of issuers no longer trusted", metadata: ["error": "\(describe(error))"])
            for path in dropped { unlink(path) }
        }
        onFilesChanged(.crl)
    }

    /// Verifies a CRL from the CA (`accept`) and, when newer than the one held from its issuer,
    /// saves it at `path` (crl.der: the active issuer's) and refuses its serials from now on;
    /// whether it was newer.
    @discardableResult
    func take(_ der: [UInt8], path: String? = nil) async throws -> Bool {
        let path = path ?? crlPath
        let (crl, key, newer) = try await acceptKeyed(der)
        // The same CRL is saved again under a new name when its issuer stopped or started being
        // the active one (crl.der now holds another issuer's CRL).
        let moved = state.withLock { state in
            if path == crlPath { state.activeKey = key }
            return state.crls[key].map { $0.path != path } ?? false
        }
        guard newer || moved else { return false }
        let previous = path == crlPath ? await previousActive(besides: key) : nil
        var set: DerivedFiles.FileSet = [(path, crl.der, 0o644)]
        if let previous { set.insert((previous.path, previous.der, 0o644), at: 0) }
        try writeCRLs(set)
        if let previous { state.withLock { $0.crls[previous.key]?.path = previous.path } }
        hold(crl, key: key, path: path)
        // Newer, or another issuer's CRL at this path: either way other bytes on disk.
        onFilesChanged(.crl)
        logger.debug("CRL refreshed", metadata: ["number": "\(crl.number ?? -1)", "revoked": "\(crl.entries.count)", "file": "\(path)"])
        return newer
    }

    /// Fetches the CRL now and then every `refreshInterval`, or at once after a revocation hint.
    func refreshCRLForever() async throws {
        while !Task.isCancelled {
            do {
                try await refreshCRL()
            } catch let error where isShutdown(error) {
                throw CancellationError()
            } catch {
                logger.warning("CRL refresh failed; keeping the last one",
                               metadata: ["error": "\(describe(error))", "held_number": "\(heldNumber ?? -1)"])
            }
            // Whichever comes first: the interval, or a streamed revocation asking for a fresh CRL.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await self.clock.sleep(for: self.refreshInterval.timeInterval) }
                group.addTask { await self.refreshNow.wait() }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    /// Follows WatchRevocations, resuming after the last sequence seen. When the stream to a
    /// replica fails without an answer (`ReplicaFailure.movesOn`) it reconnects at once to the
    /// next replica; once every replica failed in a row, and after a refusal, it backs off.
    func watchForever(schedule: RenewalSchedule) async throws {
        var failover = StreamFailover(replicas: replicas, schedule: schedule, call: "WatchRevocations")
        var address = replicas.active
        while !Task.isCancelled {
            let opened = StreamOpened()
            do {
                try await source.watch(address, afterSequence: lastSequence, onOpen: { [replicas, address, clock] in
                    opened.set(at: clock.now)
                    replicas.answered(by: address)
                }, onEvent: { self.apply($0) })
                // A CA ends the stream only when it shuts down: resume on the next replica. One that
                // keeps ending it is not reconnected to in a tight loop.
                failover.ended()
                address = moveStream(from: address, because: "the replica ended it")
                try await clock.sleep(for: 1)
            } catch let error where isShutdown(error) {
                throw CancellationError()
            } catch {
                switch failover.failed(error, at: address, openedAt: opened.at, now: clock.now) {
                case .moveOn:
                    address = moveStream(from: address, because: describe(error))
                case .backOff(let delay, let nextReplica):
                    logger.notice("revocation stream down; CRL refresh covers meanwhile",
                                  metadata: ["error": "\(describe(error))", "retry_in": "\(String(format: "%.1f", delay))s"])
                    reportSuppressed()
                    if nextReplica { address = replicas.address(after: address) }
                    try await clock.sleep(for: delay)
                }
            }
            reportSuppressed()
        }
    }

    /// The replica the stream moves to from `address`; says so when there is another one.
    private func moveStream(from address: HostPort, because reason: String) -> HostPort {
        let next = replicas.address(after: address)
        if next != address {
            logger.notice("revocation stream moves to the next CA replica", metadata: [
                "from": "\(address)", "to": "\(next)", "after_sequence": "\(lastSequence)", "reason": "\(reason)"])
        }
        return next
    }

    /// A streamed revocation is only a hint: it makes the agent fetch the signed CRL at once.
    func apply(_ event: Vouch_V1_RevocationEvent) {
        let wellFormed = (1...Self.maxSerialHexDigits).contains(event.serial.utf8.count)
            && event.serial.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
            && event.spiffeID.utf8.count <= Self.maxSPIFFEIDBytes
        if wellFormed {
            state.withLock { $0.lastSequence = max($0.lastSequence, event.sequence) }
            refreshNow.signal()
        }
        guard let suppressed = eventLog.admit() else { return }
        if suppressed > 0 { logSuppressed(suppressed) }
        if wellFormed {
            logger.info("revocation hint received; fetching the CRL", metadata: [
                "serial": "\(event.serial)", "spiffe_id": "\(event.spiffeID)", "sequence": "\(event.sequence)"])
        } else {
            logger.warning("dropped a malformed revocation event", metadata: [
                "serial_bytes": "\(event.serial.utf8.count)", "spiffe_id_bytes": "\(event.spiffeID.utf8.count)",
                "sequence": "\(event.sequence)"])
        }
    }

    private func reportSuppressed() {
        let count = eventLog.takeSuppressed()
        if count > 0 { logSuppressed(count) }
    }

    private func logSuppressed(_ count: Int) {
        logger.warning("revocation events arriving faster than they are logged", metadata: ["not_logged": "\(count)"])
    }
}

/// When a replica accepted a stream, if it did.
final class StreamOpened: Sendable {
    private let opened = Mutex<Date?>(nil)
    func set(at date: Date) { opened.withLock { $0 = date } }
    var at: Date? { opened.withLock { $0 } }
}
