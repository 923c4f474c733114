import Foundation
import GRPCCore
import Logging
import Metrics
import VouchAPI
import VouchCrypto
import VouchTLS
import Synchronization
import X509

/// Whether the agent's verified CRL lists a serial; the keeper asks before renewing.
protocol RevocationStatus: Sendable {
    func isRevoked(_ serial: String) -> Bool
    var heldNumber: Int64? { get }
    /// Fetches the CA's signed CRL now; whether it lists `serial`. A CA's word that a certificate
    /// is revoked counts only when its signed CRL agrees: an impostor holding the server's key
    /// can say anything, but cannot sign a CRL.
    func confirmRevoked(_ serial: String) async -> Bool
    /// The CRL files `identity` needs in crl.pem that are not held, fetched to be written with it (`IdentityCRLs`).
    func crls(for identity: VerifiedIdentity, roots: [Certificate], enrolling: Bool) async -> IdentityCRLs
}

/// Obtains the agent's identity and keeps it fresh: reuses a valid identity on disk or enrolls
/// with the token, renews at the scheduled time, backs off while the CA fails, and after expiry
/// or revocation waits for a new token instead of calling the CA in vain. Time comes from
/// `clock` only, so tests move it instead of waiting.
final class IdentityKeeper: Sendable {
    let configuration: AgentConfiguration
    let files: IdentityFiles
    let trust: AgentTrust
    let ca: any CertificateAuthorityCalls
    let schedule: RenewalSchedule
    let hooks: FileChangeHooks
    let revocations: any RevocationStatus
    let clock: any AgentClock
    let state: AgentState
    let logger: Logger
    /// Told about each new certificate (first one included).
    let onIdentity: @Sendable (AgentSnapshot) -> Void
    /// Cuts the wait for the next renewal short (the trust follower asks when the CA dropped the current root).
    let wake: RenewalWake
    /// How often the token file is looked at while waiting for a new token.
    static let tokenPollInterval: TimeInterval = 2
    let rotationsCounter = Counter(label: "vouch_agent_rotations_total")
    let failuresCounter = Counter(label: "vouch_agent_renewal_failures_total")
    let expiryGauge = Gauge(label: "vouch_agent_certificate_expires_in_seconds")
    let notAfterGauge = Gauge(label: "vouch_agent_certificate_not_after_timestamp_seconds")
    /// The CA's `renew_after_expiry`, as its last Enroll or Renew answer said: for this long after
    /// expiry the agent keeps trying to renew before it asks for a new token.
    private let renewAfterExpiry = Mutex<TimeInterval>(0)

    init(configuration: AgentConfiguration, files: IdentityFiles, ca: any CertificateAuthorityCalls, hooks: FileChangeHooks,
         revocations: any RevocationStatus, clock: any AgentClock, state: AgentState, logger: Logger,
         onIdentity: @escaping @Sendable (AgentSnapshot) -> Void, wake: RenewalWake = RenewalWake()) {
        self.wake = wake
        self.configuration = configuration
        self.files = files
        self.trust = AgentTrust(configuration: configuration, files: files)
        self.ca = ca
        self.schedule = RenewalSchedule(configuration)
        self.hooks = hooks
        self.revocations = revocations
        self.clock = clock
        self.state = state
        self.logger = logger
        self.onIdentity = onIdentity
    }

    // MARK: First identity

    /// Reuses the identity on disk if it is valid and verifies against the agent's trust,
    /// else says why and enrolls with the token.
    func obtainInitialIdentity() async throws {
        var info = stat()
        // Anything but a regular svid.pem is left to the output directory check before enrolling.
        if lstat(files.certificate, &info) == 0, info.st_mode & S_IFMT == S_IFREG {
            do {
                let identity = try files.load()
                if identity.leaf.notValidAfter > clock.now {
                    try await trust.verifyOnDisk(identity, now: clock.now)
                    logger.info("using identity on disk", metadata: ["serial": "\(identity.leaf.serialHex)",
                                                                    "not_after": "\(identity.leaf.notValidAfter)"])
                    record(identity.leaf, rotated: false)
                    return
                }
                logger.error("certificate on disk has expired", metadata: ["serial": "\(identity.leaf.serialHex)",
                                                                           "not_after": "\(identity.leaf.notValidAfter)"])
            } catch {
                logger.error("not using the identity on disk; enrolling with the token", metadata: ["reason": "\(error)"])
            }
        }
        try await enrollWithToken()
    }

    private func enrollWithToken() async throws {
        guard let tokenPath = configuration.tokenFilePath else {
            throw AgentError("no valid certificate in \(files.directory) and no --token-file: create a token with "
                + "`vouch token create --spiffe-id ID` and pass it with --token-file")
        }
        guard let token = try? String(contentsOfFile: tokenPath, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty else {
            throw AgentError("cannot read a token from \(tokenPath)")
        }
        // Spend the token only if the answer can be written.
        try OutputDirectory(files: files).prepare()
        _ = try trust.configuredRoots()
        let key = try PrivateKey(generating: configuration.keyAlgorithm)
        let answer: CAAnswer
        do {
            answer = try await ca.enroll(token: token, key: key, ttl: configuration.certificateTTL.wholeSeconds)
            renewAfterExpiry.withLock { $0 = answer.renewAfterExpiry ?? 0 }
        } catch let error as RPCError where error.code == .unauthenticated {
            throw AgentError("the CA refused the token in \(tokenPath) (\(error.message)): create a new one with "
                + "`vouch token create --spiffe-id ID`")
        } catch let rejected as IdentityRejected {
            throw AgentError("rejected the CA's enrollment answer: \(rejected)")
        }
        let identity: VerifiedIdentity, roots: [Certificate]
        do {
            (identity, roots) = try await trust.verifyEnrollment(answer, key: key, now: clock.now)
        } catch let rejected as IdentityRejected {
            throw AgentError("rejected the CA's enrollment answer: \(rejected)")
        }
        noteUntrustedRoots(answer, trusted: roots)
        // The first crl.pem next to the new svid.pem must already be complete (servers refuse an empty one).
        let crls = await revocations.crls(for: identity, roots: roots, enrolling: true)
        try await writeEnrolled(identity, key: key, bundlePEM: try Certificate.pemBundle(roots), crls: crls)
        crls.adopt()
        logger.info("enrolled", metadata: ["spiffe_id": "\(identity.leaf.spiffeID ?? "")", "serial": "\(identity.leaf.serialHex)",
                                           "not_after": "\(identity.leaf.notValidAfter)"])
        record(identity.leaf, rotated: false)
    }

    /// Writes an identity the CA has just issued, again and again while the disk refuses it (full,
    /// read-only): the token's use is spent, so enrolling again could fail for good.
    private func writeEnrolled(_ identity: VerifiedIdentity, key: PrivateKey, bundlePEM: String, crls: IdentityCRLs) async throws {
        var failures = 0
        while true {
            do {
                return try IdentityWriter(files: files).write(identity, key: key, bundlePEM: bundlePEM, crls: crls)
            } catch {
                failures += 1
                guard identity.leaf.notValidAfter > clock.now, !Task.isCancelled else { throw error }
                let retryAt = noteFailure(error, attempt: failures, serial: identity.leaf.serialHex, notAfter: identity.leaf.notValidAfter,
                                          what: "enrolled, but could not write the new identity; writing it again")
                try await clock.sleep(until: retryAt)
            }
        }
    }

    /// Roots in an answer that the agent does not already trust are never written.
    private func noteUntrustedRoots(_ answer: CAAnswer, trusted: [Certificate]) {
        let count = trust.untrustedRootCount(answer, trusted: trusted)
        if count > 0 {
            logger.notice("ignoring roots in the CA's answer that the agent does not already trust", metadata: ["count": "\(count)"])
        }
    }

    /// Sets the time-dependent gauges; called before each metrics scrape.
    func refreshGauges() {
        guard let notAfter = state.current.notAfter else { return }
        expiryGauge.record(notAfter.timeIntervalSince(clock.now))
        notAfterGauge.record(notAfter.timeIntervalSince1970)
    }

    private func record(_ leaf: Certificate, rotated: Bool) {
        if rotated { rotationsCounter.increment() }
        let now = clock.now
        state.update { snapshot in
            snapshot.spiffeID = leaf.spiffeID ?? ""
            snapshot.serial = leaf.serialHex
            snapshot.notBefore = leaf.notValidBefore
            snapshot.notAfter = leaf.notValidAfter
            if rotated {
                snapshot.rotations += 1
                snapshot.lastRotation = now
            }
            snapshot.lastError = ""
        }
        refreshGauges()
        onIdentity(state.current)
    }

    // MARK: Rotation

    /// Renews for as long as the agent runs. `reloadListener` makes the local listener serve the
    /// files just written and returns the certificate it now serves.
    func rotateForever(reloadListener: @escaping @Sendable () throws -> Certificate) async throws {
        var failures = 0
        var retryAt: Date?
        // Renewed by the CA but not yet written (full or read-only disk): written on the next
        // attempt instead of renewing again, since a renewed certificate may renew only once more.
        var unwritten: (identity: VerifiedIdentity, key: PrivateKey)?
        while !Task.isCancelled {
            let current = state.current
            guard let notBefore = current.notBefore, let notAfter = current.notAfter else { return }
            let due = retryAt ?? schedule.renewalTime(notBefore: notBefore, notAfter: notAfter)
            state.update { $0.nextRenewal = due }
            try await wake.sleep(until: due, on: clock)

            if let held = unwritten?.identity.leaf, held.notValidAfter <= clock.now || revocations.isRevoked(held.serialHex) {
                unwritten = nil
            }
            // An expired or revoked certificate cannot be renewed: only a new token helps. Revoked
            // means listed in a verified CRL, never a mere streamed event.
            let dead = clock.now >= notAfter ? "expired at \(notAfter)" : (revocations.isRevoked(current.serial) ? "was revoked" : nil)
            // Unless the CA lets an expired, unrevoked certificate renew for a while (renew_after_expiry).
            let mayRenewExpired = clock.now >= notAfter && !revocations.isRevoked(current.serial)
                && clock.now.timeIntervalSince(notAfter) <= renewAfterExpiry.withLock { $0 }
            if let dead, unwritten == nil, !mayRenewExpired {
                if dead == "was revoked" {
                    logger.notice("own certificate is listed in the CA's signed CRL", metadata: [
                        "serial": "\(current.serial)", "crl_number": "\(revocations.heldNumber ?? -1)"])
                }
                try await waitForNewToken(because: dead, reloadListener: reloadListener)
                failures = 0
                retryAt = nil
                continue
            }
            do {
                if unwritten == nil {
                    let key = try PrivateKey(generating: configuration.keyAlgorithm)
                    let held = try files.load().leaf
                    let answer = try await ca.renew(current: files, newKey: key, ttl: configuration.certificateTTL.wholeSeconds)
                    renewAfterExpiry.withLock { $0 = answer.renewAfterExpiry ?? 0 }
                    let identity = try await trust.verifyRenewal(answer, key: key, current: held, now: clock.now)
                    noteUntrustedRoots(answer, trusted: try trust.heldRoots())
                    unwritten = (identity, key)
                }
                if let (identity, key) = unwritten {
                    // A new intermediate's CRL (none held yet) goes into crl.pem with the certificate it issued.
                    let crls = await revocations.crls(for: identity, roots: [], enrolling: false)
                    try IdentityWriter(files: files).write(identity, key: key, bundlePEM: nil, crls: crls)
                    crls.adopt()
                    if !crls.files.isEmpty { hooks.notify(.crl) }
                }
                unwritten = nil
                let served = try reloadListener()
                logger.info("rotated", metadata: ["from": "\(current.serial)", "serial": "\(served.serialHex)",
                                                  "not_after": "\(served.notValidAfter)"])
                failures = 0
                retryAt = nil
                record(served, rotated: true)
                hooks.notify(.certificate)
            } catch let error as RPCError where error.code == .failedPrecondition && RefusalReason(of: error) == .certificateRevoked
                && !Task.isCancelled {
                if await revocations.confirmRevoked(current.serial) {
                    logger.notice("the CA refused to renew: own certificate revoked, as its signed CRL says",
                                  metadata: ["error": "\(error.message)"])
                    try await waitForNewToken(because: "was revoked", reloadListener: reloadListener)
                    failures = 0
                    retryAt = nil
                } else {
                    failures += 1
                    retryAt = noteFailure(error, attempt: failures, serial: current.serial, notAfter: notAfter,
                                          what: "the CA says the certificate is revoked but its signed CRL does not; keeping it")
                }
            } catch let error as RPCError where error.code == .failedPrecondition && RefusalReason(of: error) == .certificateExpired
                && !Task.isCancelled {
                logger.notice("the CA refused to renew the expired certificate", metadata: ["error": "\(error.message)"])
                try await waitForNewToken(because: "expired at \(notAfter)", reloadListener: reloadListener)
                failures = 0
                retryAt = nil
            } catch let error where isShutdown(error) {
                throw CancellationError()
            } catch {
                failures += 1
                let what = if let pending = unwritten?.identity.leaf {
                    "renewed as \(pending.serialHex), but could not write the new certificate; keeping the current one and writing it again"
                } else if error is IdentityRejected {
                    "rejected the CA's answer; keeping the current certificate"
                } else {
                    "renewal failed; keeping the current certificate"
                }
                retryAt = noteFailure(error, attempt: failures, serial: current.serial, notAfter: notAfter, what: what)
            }
        }
    }

    /// Counts and logs a failed renewal; returns when to try again.
    private func noteFailure(_ error: any Error, attempt failures: Int, serial: String, notAfter: Date, what: String) -> Date {
        failuresCounter.increment()
        let message = describe(error)
        let now = clock.now
        state.update {
            $0.failures += 1
            $0.lastError = message
            $0.lastErrorAt = now
        }
        let delay = schedule.backoff(failures: failures)
        logger.warning("\(what)", metadata: [
            "error": "\(message)", "attempt": "\(failures)", "serial": "\(serial)",
            "retry_in": "\(String(format: "%.1f", delay))s", "not_after": "\(notAfter)"])
        return now.addingTimeInterval(delay)
    }

    /// The certificate expired or was revoked, so the CA will not renew it: say what the operator
    /// must do, then wait (without calling the CA) for a new token in the token file.
    private func waitForNewToken(because reason: String, reloadListener: @Sendable () throws -> Certificate) async throws {
        let instruction = "certificate \(state.current.serial) \(reason) and the CA will not renew it: "
            + "create a new token with `vouch token create --spiffe-id \(state.current.spiffeID)` and write it to "
            + (configuration.tokenFilePath ?? "a file passed as --token-file")
        let now = clock.now
        state.update {
            $0.lastError = instruction
            $0.lastErrorAt = now
        }
        logger.error("\(instruction)")
        guard let tokenPath = configuration.tokenFilePath else { throw AgentError(instruction) }
        let seen = Self.modificationDate(tokenPath)
        while Self.modificationDate(tokenPath) == seen {
            try await clock.sleep(for: Self.tokenPollInterval)
        }
        try await enrollWithToken()
        _ = try reloadListener()
        hooks.notify(.certificate)
    }

    static func modificationDate(_ path: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }
}
