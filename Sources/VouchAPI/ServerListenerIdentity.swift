import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VouchAuthority
import VouchCrypto
import VouchFiles
import VouchHTTP
import VouchTLS

/// The certificate this replica's gRPC listener presents, issued by the replica to itself: at
/// start, at 2/3 of its lifetime, and at once when the signing issuer changes. A P-256 leaf for
/// the CA server's SPIFFE ID with the DNS and IP names of D/server.pem (what `vouch ca init
/// --san` chose), signed by the active issuer; its key stays in memory, so a read-only CA
/// directory is never written. Each one is recorded (audit `issue`, "CA listener"), a renewal
/// superseding its predecessor, so the certificates in use are always known to the CA.
///
/// Listeners are told of each new certificate (`onRenewal`) and reload it: new handshakes get
/// it, open connections keep theirs. With the database down at start, D/server.pem and
/// server_key.pem are served until a certificate can be recorded.
public final class ServerListenerIdentity: Service, Sendable {
    /// What the listener presents now.
    public struct Current: Sendable {
        /// The leaf, then the issuer's chain.
        public let certificateChainPEM: String
        public let privateKeyPEM: String
        public let serial: String
        public let notAfter: Date
        /// When to renew; nil for the files' pair, which is replaced as soon as the database answers.
        public let renewAt: Date?
        /// The record's serial this one supersedes on renewal; nil for the files' pair.
        let recordedSerial: String?
        /// The intermediate that signed it; nil for the files' pair.
        let issuerSerial: String?
    }

    let authority: CertificateAuthority
    let store: any AuthorityStore
    let files: CAFiles
    let lifetime: TimeInterval
    let logger: Logger
    let spiffeID: String
    let dnsNames: [String]
    let ipAddresses: [String]
    /// Retry interval after a failed renewal (doubles up to `maximumRetry`).
    let firstRetry: TimeInterval
    let maximumRetry: TimeInterval

    private let current: Mutex<Current>
    private let listeners = Mutex<[@Sendable () throws -> Void]>([])
    /// Wake-ups of the renewal loop: an issuer change, or the loop's own timer.
    private let wakes: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    /// Set by `activeIssuerChanged()`: renew at the next wake-up whatever the schedule says.
    private let renewNow = Mutex(false)

    /// Issues the first certificate (or falls back to the files when it cannot be recorded).
    /// - Parameter lifetime: `--server-cert-ttl`.
    public init(authority: CertificateAuthority, store: any AuthorityStore, files: CAFiles, lifetime: TimeInterval,
                logger: Logger, firstRetry: TimeInterval = 1, maximumRetry: TimeInterval = 30) async throws {
        self.authority = authority
        self.store = store
        self.files = files
        self.lifetime = lifetime
        self.logger = logger
        self.firstRetry = firstRetry
        self.maximumRetry = maximumRetry
        spiffeID = IssuancePolicy.serverID(trustDomain: authority.policy.trustDomain)
        // The bootstrap certificate's names are the ones clients dial.
        let bootstrap = try Self.readFiles(files)
        let names = try X509Certificate(pem: bootstrap.certificateChainPEM).subjectAltNames
        dnsNames = names.dnsNames
        ipAddresses = names.ipAddresses
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        do {
            current = Mutex(try await Self.issue(authority: authority, store: store, spiffeID: spiffeID, dnsNames: dnsNames,
                                                 ipAddresses: ipAddresses, lifetime: lifetime, predecessor: nil))
            logger.info("issued the listener certificate", metadata: Self.metadata(current.withLock { $0 }))
        } catch {
            current = Mutex(bootstrap)
            logger.warning("cannot issue a listener certificate (database unavailable?): serving server.pem until it can; retrying",
                           metadata: ["reason": "\(error)", "serial": "\(bootstrap.serial)"])
        }
    }

    /// The certificate and key the listener presents now.
    public var presented: Current { current.withLock { $0 } }

    /// Runs `reload` after each new certificate (a listener's `RotatingServerTLS.reload()`).
    public func onRenewal(_ reload: @escaping @Sendable () throws -> Void) {
        listeners.withLock { $0.append(reload) }
    }

    /// The signing issuer changed: renew now, so the listener's certificate comes from it.
    public func activeIssuerChanged() {
        renewNow.withLock { $0 = true }
        wake.yield()
    }

    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.renewForever() }
            group.addTask {
                // A new signing issuer (rotation, root activation): its certificate at once.
                for await set in self.authority.issuerUpdates() {
                    let held = self.presented
                    if held.issuerSerial != nil, held.issuerSerial != set.active.serial { self.activeIssuerChanged() }
                }
            }
            await untilShutdown()
            group.cancelAll()
        }
    }

    private func renewForever() async {
        var failures = 0
        var retryAt: Date?
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let held = presented
            let due = retryAt ?? held.renewAt ?? Date()
            await sleep(until: due)
            if Task.isShuttingDownGracefully || Task.isCancelled { return }
            let forced = renewNow.withLock { value in defer { value = false }; return value }
            guard forced || Date() >= due else { continue }
            do {
                let next = try await Self.issue(authority: authority, store: store, spiffeID: spiffeID, dnsNames: dnsNames,
                                                ipAddresses: ipAddresses, lifetime: lifetime, predecessor: held.recordedSerial)
                current.withLock { $0 = next }
                // Reloaded before it is logged: once the line is out, new handshakes get it.
                reloadListeners()
                var metadata = Self.metadata(next)
                metadata["from"] = "\(held.serial)"
                logger.info(forced ? "renewed the listener certificate: the signing issuer changed" : "renewed the listener certificate",
                            metadata: metadata)
                failures = 0
                retryAt = nil
            } catch {
                failures += 1
                let delay = min(maximumRetry, firstRetry * pow(2, Double(min(failures - 1, 16))))
                retryAt = Date().addingTimeInterval(delay)
                logger.warning("cannot renew the listener certificate; keeping the current one", metadata: [
                    "reason": "\(error)", "serial": "\(held.serial)", "not_after": "\(held.notAfter.formatted(.iso8601))",
                    "retry_in": "\(String(format: "%.1f", delay))s"])
                // Never let it lapse: past its end the files' pair is better than nothing.
                if held.recordedSerial != nil, held.notAfter <= Date().addingTimeInterval(delay),
                   let bootstrap = try? Self.readFiles(files), bootstrap.notAfter > Date() {
                    current.withLock { $0 = bootstrap }
                    logger.warning("the listener certificate expires before the next attempt: serving server.pem meanwhile",
                                   metadata: ["serial": "\(bootstrap.serial)"])
                    reloadListeners()
                }
            }
        }
    }

    private func reloadListeners() {
        for reload in listeners.withLock({ $0 }) {
            do {
                try reload()
            } catch {
                logger.error("cannot reload the listener with the new certificate", metadata: ["reason": "\(error)"])
            }
        }
    }

    /// Sleeps until `date`, a wake-up, or shutdown.
    private func sleep(until date: Date) async {
        let delay = date.timeIntervalSinceNow
        guard delay > 0 else { return }
        let timer = Task { [wake] in
            if (try? await Task.sleep(for: .milliseconds(Int64(delay * 1000) + 1))) != nil { wake.yield() }
        }
        defer { timer.cancel() }
        try? await cancelOnShutdown { [wakes] in
            for await _ in wakes { return }
        }
    }

    /// Issues and records a listener certificate from the active issuer.
    static func issue(authority: CertificateAuthority, store: any AuthorityStore, spiffeID: String, dnsNames: [String],
                      ipAddresses: [String], lifetime: TimeInterval, predecessor: String?) async throws -> Current {
        let now = Date()
        let signing = authority.listenerSigning
        let issued = try LocalIssuance.issue(signer: signing.signer, spiffeID: spiffeID, dnsNames: dnsNames,
                                             ipAddresses: ipAddresses, lifetime: lifetime, now: now)
        var record = issued.record
        record.issuerID = signing.issuerID
        let detail = "\(spiffeID) (CA listener) until \(record.notAfter.formatted(.iso8601))"
        if let predecessor {
            record.renewedFrom = predecessor
            // A renewal supersedes its predecessor, so only the certificate in use counts as live.
            _ = try await store.recordRenewal(certificate: record, previousSerial: predecessor, replacing: nil, at: now, budget: nil,
                                              audit: [AuditEntry(time: now, actor: "local", action: .issue, subject: record.serial,
                                                                 peer: "local", detail: detail + " from \(predecessor)")])
        } else {
            try await store.insertCertificate(record, audit: AuditEntry(time: now, actor: "local", action: .issue,
                                                                       subject: record.serial, peer: "local", detail: detail))
        }
        let renewAt = now.addingTimeInterval(record.notAfter.timeIntervalSince(now) * 2 / 3)
        return Current(certificateChainPEM: issued.certificate.pem + signing.chainPEM, privateKeyPEM: try issued.key.pkcs8PEM(),
                       serial: record.serial, notAfter: record.notAfter, renewAt: renewAt, recordedSerial: record.serial,
                       issuerSerial: signing.issuerSerial)
    }

    /// D/server.pem and server_key.pem.
    static func readFiles(_ files: CAFiles) throws -> Current {
        let chain: String, key: String
        do {
            // Bounded: a FIFO or /dev/zero in their place is refused instead of hanging the start.
            chain = try SmallFile.text(files.serverCertificate, limit: 1 << 20)
            key = try SmallFile.text(files.serverKey, limit: 64 * 1024)
        } catch {
            throw AuthorityError(.notFound, "cannot read \(files.serverCertificate) and \(files.serverKey): \(error)")
        }
        let leaf = try X509Certificate(pem: chain)
        return Current(certificateChainPEM: chain, privateKeyPEM: key, serial: leaf.serialHex, notAfter: leaf.notAfter,
                       renewAt: nil, recordedSerial: nil, issuerSerial: nil)
    }

    static func metadata(_ current: Current) -> Logger.Metadata {
        ["serial": "\(current.serial)", "not_after": "\(current.notAfter.formatted(.iso8601))"]
    }
}

extension CertificateAuthority {
    /// What the listener's certificate is signed with: the active issuer's signer, the chain
    /// sent after the leaf, and the issuer's id for the record.
    var listenerSigning: (signer: CertificateSigner, chainPEM: String, issuerID: Int64?, issuerSerial: String) {
        let set = issuerSet
        return (set.active.signer, set.active.chainDER.map { PEM.encode($0, label: "CERTIFICATE") }.joined(),
                set.isAdopted ? set.active.record.id : nil, set.active.serial)
    }
}
