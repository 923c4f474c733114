import Foundation
import VouchCrypto
import VouchIdentityRules

/// The authority's decisions: who may get which certificate, token use,
/// renewal, revocation and the CRL. Transport and storage are injected.
public final class CertificateAuthority: Sendable {
    public let policy: IssuancePolicy
    /// The CA directory's initial pair and settings; what signs is `issuerSet`.
    public let material: CAMaterial
    public let revocations = RevocationRegistry()
    /// Callers of `catchUpRevocations` waiting for the next read.
    private let catchUpWaiters = BatchQueue<CheckedContinuation<Int, any Error>>()
    let store: any AuthorityStore
    let clock: @Sendable () -> Date
    private let crls: CRLPublishers
    private let issuers: IssuerBoard
    /// One issuer reload at a time (the follower's poll and a NOTIFY may coincide).
    private let issuerReloads = BatchQueue<CheckedContinuation<Bool, any Error>>()
    private let confirmations = TrustConfirmationCache()
    private let tokenGuesses: FailedAttemptLimiter
    /// Agent reports stored lately, so identical repeats cost no write (CertificateAuthority+Fleet.swift).
    let recentAgentReports = RecentAgentReports()
    /// The latest agent listing, whose next pages `listAgents` cuts from it.
    let fleetListings = FleetListings()

    /// - Parameter warn: gets what the server should log that no request reports, e.g. a CRL served
    ///   as last signed because the PKCS#11 token failed.
    public init(store: any AuthorityStore, material: CAMaterial, policy: IssuancePolicy,
                clock: @escaping @Sendable () -> Date = { Date() }, warn: @escaping @Sendable (String) -> Void = { _ in }) {
        self.store = store
        self.material = material
        self.policy = policy
        self.clock = clock
        self.crls = CRLPublishers(store: store, registry: revocations,
                                  validity: policy.crlValidity, refreshInterval: policy.crlRefreshInterval, warn: warn)
        self.issuers = IssuerBoard(IssuerSet.bootstrap(material))
        self.tokenGuesses = FailedAttemptLimiter(limit: policy.failedTokenAttemptsPerMinute, window: 60)
    }

    /// Adopts the CA directory's pair as the initial issuers (once per database), loads the
    /// issuers, and loads persisted revocations so revoked certificates stay refused after a restart.
    public func start() async throws {
        try await reloadIssuers()
        try await catchUpRevocations()
    }

    // MARK: Issuers

    /// The issuers as this process uses them now.
    public var issuerSet: IssuerSet { issuers.current }

    /// The current issuer set at once, then each new one (after `reloadIssuers()` installs it);
    /// ends on `finishIssuerUpdates()`.
    public func issuerUpdates() -> AsyncStream<IssuerSet> { issuers.updates() }

    /// Ends every `issuerUpdates()` stream (on shutdown).
    public func finishIssuerUpdates() { issuers.finish() }

    /// Records that a certificate holder holds the trust bundle of `generation` (ConfirmTrustBundle),
    /// keyed by its certificate's serial; `vouch ca root status` counts these.
    public func recordTrustConfirmation(caller: Caller, generation: Int64, bundleSHA256: [UInt8]) async throws {
        guard let serial = caller.serial, let spiffeID = caller.spiffeID else {
            throw AuthorityError(.unauthenticated, "ConfirmTrustBundle needs a client certificate")
        }
        try await store.recordTrustConfirmation(serial: serial, spiffeID: spiffeID, generation: generation,
                                                bundleSHA256: bundleSHA256, peer: caller.peer, at: clock())
        confirmations.record(serial: serial, generation: generation)
    }

    /// The chain sent with a renewal. From a root's activation to the old root's retirement the
    /// active chain is `[I2, X]`; a caller that has not confirmed holding the new root (an agent
    /// older than trust bundle following, after a forced activation) gets `[X]` alone: it accepts
    /// only intermediates that chain to roots it holds, and X chains to the old root it holds.
    private func renewalChain(callerSerial: String, issuers: IssuerSet, now: Date) async -> [[UInt8]] {
        let chain = issuers.chainDER
        guard chain.count > 1, let rootID = issuers.active.record.parentID, let root = issuers.record(id: rootID) else { return chain }
        let confirmed = await confirmations.generation(of: callerSerial, now: now) { try await store.trustConfirmations() }
        return (confirmed ?? .min) >= root.createdGeneration ? chain : Array(chain.dropFirst())
    }

    /// Why this process signs with another intermediate than the active one (it cannot load that
    /// key), for the server to log once per generation; nil when it signs with the active one.
    public var signingIssuerWarning: String? { issuers.current.signingIssuerWarning }

    /// Reads the issuers again when the store's generation moved since the set held (the first
    /// time: adopts the CA directory's pair), or when a key could not be loaded last time; whether
    /// a new set was installed. A set whose keys cannot sign at all is refused and the held one
    /// stays. Concurrent callers share reads.
    @discardableResult
    public func reloadIssuers() async throws -> Bool {
        try await withCheckedThrowingContinuation { waiter in
            if issuerReloads.append(waiter) { Task { await reloadForWaiters() } }
        }
    }

    private func reloadForWaiters() async {
        while let waiters = issuerReloads.takeBatch(limit: Int.max) {
            do {
                let changed = try await reloadIssuersOnce()
                for waiter in waiters { waiter.resume(returning: changed) }
            } catch {
                for waiter in waiters { waiter.resume(throwing: error) }
            }
        }
    }

    private func reloadIssuersOnce() async throws -> Bool {
        let held = issuers.current
        let snapshot: IssuerSnapshot
        if !held.isAdopted {
            let (root, intermediate) = material.initialRecords(now: clock())
            snapshot = try await store.adoptInitialIssuers(root: root, intermediate: intermediate)
            guard let initial = snapshot.initialIntermediate, initial.der == material.intermediate.der else {
                throw AuthorityError(.failedPrecondition, "the database belongs to another CA: its first intermediate is "
                    + "\(snapshot.initialIntermediate?.serial ?? "missing"), not \(material.intermediate.serialHex) of "
                    + "\(material.files?.intermediateCertificate ?? "this CA")")
            }
        } else {
            let generation = try await store.issuerGeneration()
            guard generation > held.generation || (generation == held.generation && held.signingIssuerWarning != nil) else { return false }
            snapshot = try await store.issuers()
        }
        let set = try IssuerSet.load(snapshot, anchor: material.root, now: clock(), keys: material.keys, initial: material.signer)
        if held.isAdopted, set.generation == held.generation, set.active.serial == held.active.serial { return false }
        guard issuers.replace(with: set, sameGeneration: true) else { return false }
        crls.keep(only: set.publishing)
        return true
    }

    /// The issuers, read from the store first if this process has not yet (an authority used
    /// without `start()`, as in tests).
    func loadedIssuers() async throws -> IssuerSet {
        let current = issuers.current
        if current.isAdopted { return current }
        try await reloadIssuers()
        return issuers.current
    }

    /// Reads into the registry the revocations committed since its last read, here or by another
    /// process sharing the store, so they are refused and watchers hear of them in commit order.
    /// Returns how many were new to watchers.
    /// Concurrent callers share reads: one runs at a time, and it serves every caller that came
    /// before it began (so each still sees what was committed before it asked). However many
    /// GetCRL or WatchRevocations calls arrive, they hold one database connection, not the pool.
    @discardableResult
    public func catchUpRevocations() async throws -> Int {
        try await withCheckedThrowingContinuation { waiter in
            if catchUpWaiters.append(waiter) { Task { await readForWaiters() } }
        }
    }

    private func readForWaiters() async {
        while let waiters = catchUpWaiters.takeBatch(limit: Int.max) {
            do {
                let added = revocations.addRead(try await store.revocations(afterSequence: revocations.readThrough))
                for waiter in waiters { waiter.resume(returning: added) }
            } catch {
                for waiter in waiters { waiter.resume(throwing: error) }
            }
        }
    }

    /// Records revocations this process committed: refused at once, then read back in commit order
    /// for watchers. If that read fails, the next one (the next revocation here, or a follower of a
    /// shared store) brings them: the revocation itself is committed and refused already.
    private func recordCommitted(_ records: [RevocationRecord]) async {
        revocations.add(records)
        _ = try? await catchUpRevocations()
    }

    /// Every root that is not retired.
    public var rootsDER: [[UInt8]] { issuers.current.rootsDER }
    /// The chain sent with new certificates: the signing intermediate, then its active cross certificate.
    public var chainDER: [[UInt8]] { issuers.current.chainDER }

    public func isAdmin(_ caller: Caller) -> Bool {
        caller.spiffeID.map { policy.adminIDs.contains($0) } ?? false
    }

    // MARK: Enroll

    public func enroll(token tokenText: String, csr csrDER: [UInt8], ttlSeconds: Int64, caller: Caller) async throws -> IssuedCertificate {
        let now = clock()
        let grant = try await usableGrant(tokenText, peer: caller.peer, now: now)
        // A token made before the reserved-identity rule must not mint the CA's own identities.
        try policy.checkNotReserved(grant.spiffeID)
        let csr = try parseCSR(csrDER)
        let requested = csr.subjectAltNames
        guard requested.others == 0 else {
            throw AuthorityError(.invalidArgument, "CSR requests SAN types other than URI, DNS and IP")
        }
        for uri in requested.uris where uri != grant.spiffeID {
            throw AuthorityError(.invalidArgument, "CSR requests URI SAN \(AuthorityError.quoted(uri)), but the token grants \(grant.spiffeID)")
        }
        for name in requested.dnsNames where !grant.dnsNames.contains(name.lowercased()) {
            throw AuthorityError(.invalidArgument, "CSR requests DNS SAN \(AuthorityError.quoted(name)), which the token does not grant")
        }
        var ips: [String] = []
        for ip in requested.ipAddresses {
            guard let canonical = IPAddress.canonical(ip), grant.ipAddresses.contains(canonical) else {
                throw AuthorityError(.invalidArgument, "CSR requests IP SAN \(AuthorityError.quoted(ip)), which the token does not grant")
            }
            ips.append(canonical)
        }
        // A CSR without SANs gets the whole grant; otherwise exactly what it asked for, plus the SPIFFE ID.
        let names = requested.isEmpty
            ? SubjectAltNames(uris: [grant.spiffeID], dnsNames: grant.dnsNames, ipAddresses: grant.ipAddresses)
            : SubjectAltNames(uris: [grant.spiffeID], dnsNames: requested.dnsNames.map { $0.lowercased() }, ipAddresses: ips)

        let issuers = try await loadedIssuers()
        var record = try sign(csr, names: names, ttlSeconds: ttlSeconds, now: now, issuer: issuers.active)
        record.tokenID = grant.id
        let actor = "token:\(grant.id)"
        try await store.recordEnrollment(tokenID: grant.id, now: now, certificate: record, audit: [
            AuditEntry(time: now, actor: actor, action: .tokenUse, subject: grant.id, peer: caller.peer, detail: grant.spiffeID),
            AuditEntry(time: now, actor: actor, action: .enroll, subject: record.serial, peer: caller.peer,
                       detail: "\(grant.spiffeID) until \(Self.iso(record.notAfter))"),
        ])
        return IssuedCertificate(record: record, chain: issuers.chainDER, roots: issuers.rootsDER)
    }

    /// The stored grant of a well-formed token whose secret matches, if it is still usable.
    /// Wrong secrets count against the peer's host and the token id they named (see
    /// FailedAttemptLimiter); the right secret of a used-up, expired or revoked token guesses
    /// nothing, so a fleet enrolling at once with a token's last uses is told "already used".
    private func usableGrant(_ tokenText: String, peer: String, now: Date) async throws -> TokenRecord {
        let token = EnrollmentToken.parse(tokenText)
        var stored: TokenRecord?
        if let token { stored = try await store.token(id: token.id) }
        let key = FailedAttemptLimiter.key(peer: peer, tokenID: stored?.id)
        let attempt = try tokenGuesses.begin(key: key, now: now)
        guard let token else {
            throw AuthorityError(.unauthenticated, tokenText.isEmpty ? "enrollment token missing" : "enrollment token is malformed")
        }
        guard let stored, constantTimeEquals(stored.secretHash, token.secretHash) else {
            throw AuthorityError(.unauthenticated, "enrollment token is not valid")
        }
        tokenGuesses.succeeded(attempt)
        try Self.checkUsable(stored, now: now)
        return stored
    }

    static func checkUsable(_ token: TokenRecord, now: Date) throws {
        if token.revoked { throw AuthorityError(.unauthenticated, "enrollment token \(token.id) was revoked") }
        if token.expiresAt <= now { throw AuthorityError(.unauthenticated, "enrollment token \(token.id) expired at \(iso(token.expiresAt))") }
        if token.usesConsumed >= token.usesAllowed {
            throw AuthorityError(.unauthenticated, "enrollment token \(token.id) was already used")
        }
    }

    // MARK: Renew

    public func renew(csr csrDER: [UInt8], ttlSeconds: Int64, caller: Caller) async throws -> IssuedCertificate {
        let now = clock()
        guard let serial = caller.serial else {
            throw AuthorityError(.unauthenticated, "Renew needs the current certificate as TLS client certificate")
        }
        let current = try await standing(ofSerial: serial, now: now)
        // A certificate issued before the reserved-identity rule does not carry that identity on.
        try policy.checkNotReserved(current.spiffeID)
        let replacing = try await successorToReplace(of: current, now: now)
        let csr = try parseCSR(csrDER)
        guard let currentKey = CertificateDER.subjectPublicKeyInfo(current.der) else {
            throw AuthorityError(.internal, "stored certificate \(current.serial) is not valid DER")
        }
        let reusesKey: Bool
        do {
            reusesKey = try csr.hasSameKey(asSubjectPublicKeyInfo: currentKey)
        } catch let error as CryptoError {
            throw AuthorityError(.internal, error.message)
        }
        guard !reusesKey else {
            throw AuthorityError(.invalidArgument, "the CSR reuses the current certificate's key; renewal needs a new key")
        }
        let names = SubjectAltNames(uris: [current.spiffeID], dnsNames: current.dnsNames, ipAddresses: current.ipAddresses)
        // Whichever intermediate signed the current certificate, the active one signs its renewal.
        let issuers = try await loadedIssuers()
        var record = try sign(csr, names: names, ttlSeconds: ttlSeconds, now: now, issuer: issuers.active)
        record.renewedFrom = current.serial
        record.tokenID = current.tokenID
        var audit = [AuditEntry(time: now, actor: current.spiffeID, action: .renew, subject: record.serial, peer: caller.peer,
                                detail: "from \(current.serial) until \(Self.iso(record.notAfter))")]
        if let replacing {
            audit.append(AuditEntry(time: now, actor: current.spiffeID, action: .revokeSuperseded, subject: replacing, peer: caller.peer,
                                    detail: "\(current.spiffeID) superseded: \(current.serial) renewed again as \(record.serial)"))
        }
        // A retry revokes the first child: it counts against the identity's revocations like any other.
        let replaced = try await store.recordRenewal(certificate: record, previousSerial: current.serial, replacing: replacing,
                                                     at: now, budget: selfRevocationBudget(of: current.spiffeID, now: now), audit: audit)
        if let replaced { await recordCommitted([replaced]) }
        return IssuedCertificate(record: record, chain: await renewalChain(callerSerial: current.serial, issuers: issuers, now: now),
                                 roots: issuers.rootsDER)
    }

    /// A lineage has one live certificate. A certificate already renewed may renew once more, only
    /// within `renewalRetryWindow` of that renewal and while its child has not renewed in turn (a
    /// client that lost the response retrying); the child is then revoked. Otherwise: refused, which
    /// is what a thief renewing a stolen, already renewed certificate gets.
    private func successorToReplace(of current: CertificateRecord, now: Date) async throws -> String? {
        guard let successor = current.supersededBy else { return nil }
        let refusal = AuthorityError(.failedPrecondition, "certificate \(current.serial) was already renewed (as \(successor)); "
            + "only the newest certificate of a lineage can renew", reason: .certificateSuperseded)
        // The store checks again, in the renewal's transaction, that the child is live, has not
        // renewed, and is the only one (no retry before).
        guard let child = try await store.certificate(serial: successor), child.revokedAt == nil, child.supersededBy == nil,
              now.timeIntervalSince(child.issuedAt) <= policy.renewalRetryWindow
        else { throw refusal }
        return successor
    }

    /// The stored record of a caller's certificate, refusing revoked or unknown ones.
    private func standing(ofSerial serial: String, now: Date) async throws -> CertificateRecord {
        guard let record = try await store.certificate(serial: serial) else {
            throw AuthorityError(.failedPrecondition, "certificate \(serial) was not issued by this CA")
        }
        if record.revokedAt != nil { throw AuthorityError(.failedPrecondition, "certificate \(serial) is revoked", reason: .certificateRevoked) }
        if record.notAfter <= now && !mayRenewAfterExpiry(record, now: now) {
            throw AuthorityError(.failedPrecondition, "certificate \(serial) has expired", reason: .certificateExpired)
        }
        return record
    }

    /// `renew_after_expiry`: an expired certificate renews within the window, unless already
    /// renewed (a thief must not fork a lineage its owner continued).
    private func mayRenewAfterExpiry(_ record: CertificateRecord, now: Date) -> Bool {
        policy.renewAfterExpiry > 0 && record.supersededBy == nil && now.timeIntervalSince(record.notAfter) <= policy.renewAfterExpiry
    }

    /// Refuses a caller whose certificate has been revoked since its connection was made.
    public func checkStanding(_ caller: Caller) throws {
        if let serial = caller.serial, revocations.isRevoked(serial: serial) {
            throw AuthorityError(.failedPrecondition, "client certificate \(serial) is revoked", reason: .certificateRevoked)
        }
    }

    // MARK: Revoke

    public func revoke(serial serialText: String, reason: Int, caller: Caller) async throws -> RevocationRecord {
        let now = clock()
        guard let serial = SerialNumber.canonicalHex(serialText) else {
            throw AuthorityError(.invalidArgument, "\(AuthorityError.quoted(serialText)) is not a hex serial number")
        }
        guard let revocationReason = RevocationReason(rawValue: reason) else {
            throw AuthorityError(.invalidArgument, "\(reason) is not a CRLReason code Vouch accepts (0-6, 9, 10)")
        }
        guard let callerID = caller.spiffeID else {
            throw AuthorityError(.unauthenticated, "Revoke needs a client certificate")
        }
        guard let target = try await store.certificate(serial: serial) else {
            throw AuthorityError(.notFound, "no certificate with serial \(serial)")
        }
        let admin = isAdmin(caller)
        guard admin || target.spiffeID == callerID else {
            throw AuthorityError(.permissionDenied, "\(callerID) may not revoke \(serial) of \(target.spiffeID)")
        }
        // A compromised key compromises every certificate renewed with it as credential.
        let withRenewals = revocationReason == .keyCompromise
        let records = try await store.revoke(serial: serial, reason: reason, at: now, withRenewals: withRenewals,
                                             budget: admin ? nil : selfRevocationBudget(of: callerID, now: now)) { revoked, spiffeID in
            revoked == serial
                ? AuditEntry(time: now, actor: callerID, action: .revoke, subject: revoked, peer: caller.peer,
                             detail: "\(spiffeID) \(revocationReason)")
                : AuditEntry(time: now, actor: callerID, action: .revokeLineage, subject: revoked, peer: caller.peer,
                             detail: "\(spiffeID) \(revocationReason): renewed from \(serial)")
        }
        guard let revocation = records.first(where: { $0.serial == serial }) else {
            throw AuthorityError(.notFound, "no certificate with serial \(serial)")
        }
        await recordCommitted(records)
        return revocation
    }

    /// What one identity revokes of its own (renew and revoke, renew and retry, in a loop) is
    /// bounded, counted in certificates, not calls.
    private func selfRevocationBudget(of spiffeID: String, now: Date) -> RevocationBudget {
        RevocationBudget(actor: spiffeID, now: now, window: policy.selfRevocationWindow, limit: policy.selfRevocationLimit)
    }

    /// The serial of the intermediate that issued a revoked certificate (for WatchRevocations events).
    public func issuerSerial(of revocation: RevocationRecord) -> String {
        issuers.current.issuerSerial(of: revocation.issuerID) ?? ""
    }

    /// The serial of the intermediate that issued a certificate (for the Admin listings).
    public func issuerSerial(of certificate: CertificateRecord) -> String {
        issuers.current.issuerSerial(of: certificate.issuerID) ?? ""
    }

    public func revocations(afterSequence: Int64) async throws -> [RevocationRecord] {
        try await store.revocations(afterSequence: afterSequence)
    }

    /// The CRL of an intermediate, signed by it and listing the revoked certificates it issued:
    /// `issuer` is its serial (hex; a cross certificate's serial names the intermediate it
    /// certifies), nil the one that signs now. Throws `notFound` for an unknown serial,
    /// `failedPrecondition` for a retired issuer, `unavailable` when this process lacks its key.
    public func currentCRL(issuer: String? = nil) async throws -> CRLSnapshot {
        let issuers = try await loadedIssuers()
        let publishing: SigningIssuer
        if let issuer {
            guard let serial = SerialNumber.canonicalHex(issuer) else {
                throw AuthorityError(.invalidArgument, "\(AuthorityError.quoted(issuer)) is not a hex serial number")
            }
            publishing = try issuers.publishingIssuer(serial: serial)
        } else {
            publishing = issuers.active
        }
        // Other replicas' revocations committed before this request are in the CRL: an agent told
        // of one by a replica's stream may fetch the CRL from another that has not read it yet.
        // Best effort: with the database down the last CRL is still served.
        if store is any RevocationChangeFeed { _ = try? await catchUpRevocations() }
        return try await crls.publisher(for: publishing).snapshot(now: clock())
    }

    /// The CRL of every intermediate that publishes one (not retired, key loaded here), the
    /// signing one first: for `GET /crl/all.pem`.
    public func allCRLs() async throws -> [CRLSnapshot] {
        let issuers = try await loadedIssuers()
        if store is any RevocationChangeFeed { _ = try? await catchUpRevocations() }
        var snapshots: [CRLSnapshot] = []
        for issuer in issuers.publishing {
            snapshots.append(try await crls.publisher(for: issuer).snapshot(now: clock()))
        }
        return snapshots
    }

    /// The stored CRL of the root `serial` names (RootCRL.swift); nil when it names no root.
    /// Throws `notFound` for a root with no CRL yet (or one dropped as not the root's),
    /// `failedPrecondition` for a retired root.
    public func rootCRL(serial: String) async throws -> ServedRootCRL? {
        guard let serial = SerialNumber.canonicalHex(serial) else { return nil }
        let issuers = try await loadedIssuers()
        guard let root = issuers.record(serial: serial), root.kind == .root else { return nil }
        guard root.state != .retired else { throw AuthorityError(.failedPrecondition, "root \(serial) is retired") }
        guard let crl = issuers.rootCRL(serial: serial) else { throw AuthorityError(.notFound, "root \(serial) has no CRL yet") }
        return crl
    }

    /// A signed OCSP response (RFC 6960) for a DER OCSP request, from the intermediate its CertID
    /// names (any that publishes a CRL); `unauthorized` for another issuer.
    public func ocspResponse(to request: [UInt8]) async -> [UInt8] {
        let now = clock()
        let issuers = (try? await loadedIssuers()) ?? self.issuers.current
        return await OCSPResponder(issuers: issuers.publishing.map(\.signer), validity: policy.crlRefreshInterval)
            .respond(to: request, now: now) { serial, signer in
                guard let record = try? await store.certificate(serial: serial),
                      issuers.issuerID(of: record.issuerID) == issuers.publishing.first(where: { $0.signer === signer })?.record.id
                else { return .unknown }
                if let revokedAt = record.revokedAt { return .revoked(at: revokedAt, reason: record.revocationReason ?? 0) }
                return .good
            }
    }

    // MARK: Tokens

    public func createToken(spiffeID: String, dnsNames: [String], ipAddresses: [String], ttlSeconds: Int64, uses: Int,
                            caller: Caller) async throws -> (token: EnrollmentToken, record: TokenRecord) {
        let now = clock()
        try policy.validateSPIFFEID(spiffeID)
        try policy.checkNotReserved(spiffeID)
        guard dnsNames.count <= Self.maximumGrantedNames, ipAddresses.count <= Self.maximumGrantedNames else {
            throw AuthorityError(.invalidArgument, "a token grants at most \(Self.maximumGrantedNames) DNS names and \(Self.maximumGrantedNames) IP addresses")
        }
        let dns = dnsNames.map { $0.lowercased() }
        for name in dns where !IdentityRules.isValidDNSName(name) {
            throw AuthorityError(.invalidArgument, "\(AuthorityError.quoted(name)) is not a valid DNS name")
        }
        try policy.validateGrant(spiffeID: spiffeID, dnsNames: dns)
        let ips = try ipAddresses.map { ip -> String in
            guard let canonical = IPAddress.canonical(ip) else { throw AuthorityError(.invalidArgument, "\(AuthorityError.quoted(ip)) is not an IP address") }
            return canonical
        }
        guard ttlSeconds >= 0, TimeInterval(ttlSeconds) <= policy.maximumTokenTTL else {
            throw AuthorityError(.invalidArgument, "token ttl must be between 1s and \(Int(policy.maximumTokenTTL))s")
        }
        guard (0...1000).contains(uses) else { throw AuthorityError(.invalidArgument, "uses must be between 1 and 1000") }
        let ttl = ttlSeconds == 0 ? policy.defaultTokenTTL : TimeInterval(ttlSeconds)
        let token = try EnrollmentToken.generate()
        let record = TokenRecord(id: token.id, secretHash: token.secretHash, spiffeID: spiffeID, dnsNames: dns,
                                 ipAddresses: ips, createdAt: now, expiresAt: now.addingTimeInterval(ttl),
                                 usesAllowed: uses == 0 ? 1 : uses)
        try await store.insertToken(record, audit: AuditEntry(
            time: now, actor: caller.auditName, action: .tokenCreate, subject: token.id, peer: caller.peer,
            detail: "\(spiffeID) uses=\(record.usesAllowed) until \(Self.iso(record.expiresAt))"))
        return (token, record)
    }

    /// Most DNS names (and, separately, IP addresses) one token may grant.
    public static let maximumGrantedNames = 100

    public func listTokens() async throws -> [TokenRecord] { try await store.listTokens() }

    public func revokeToken(id: String, caller: Caller) async throws {
        let now = clock()
        guard id.utf8.count == 16, id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) || (0x41...0x46).contains($0) }) else {
            throw AuthorityError(.invalidArgument, "\(AuthorityError.quoted(id)) is not a token id (16 hex digits)")
        }
        let found = try await store.revokeToken(id: id.lowercased(), audit: AuditEntry(
            time: now, actor: caller.auditName, action: .tokenRevoke, subject: id, peer: caller.peer, detail: ""))
        guard found else { throw AuthorityError(.notFound, "no token with id \(id)") }
    }

    // MARK: Queries

    public func certificate(serial serialText: String) async throws -> CertificateRecord {
        guard let serial = SerialNumber.canonicalHex(serialText) else {
            throw AuthorityError(.invalidArgument, "\(AuthorityError.quoted(serialText)) is not a hex serial number")
        }
        guard let record = try await store.certificate(serial: serial) else {
            throw AuthorityError(.notFound, "no certificate with serial \(serial)")
        }
        return record
    }

    public func listCertificates(identityGlob: String?, status: CertificateStatus?, expiringWithin: TimeInterval?,
                                 limit: Int, beforeID: Int64?) async throws -> [CertificateRecord] {
        if let identityGlob, identityGlob.utf8.count > 2048 {
            throw AuthorityError(.invalidArgument, "identity filter is longer than 2048 bytes")
        }
        return try await store.listCertificates(CertificateQuery(identityGlob: identityGlob, status: status, expiringWithin: expiringWithin,
                                                          now: clock(), limit: limit, beforeID: beforeID))
    }

    /// Unrevoked certificates whose notAfter falls within the next `interval`: the ones a renewal storm is made of.
    public func countExpiring(within interval: TimeInterval) async throws -> Int {
        try await store.countCertificates(CertificateQuery(identityGlob: nil, status: .active, expiringWithin: interval,
                                                           now: clock(), limit: 0, beforeID: nil))
    }

    public func auditEvents(afterID: Int64, limit: Int) async throws -> [AuditRecord] {
        try await store.auditEvents(afterID: afterID, limit: limit)
    }

    public var now: Date { clock() }

    /// Records a read-only admin call (listings), so the audit log shows who looked at what.
    public func auditAdminRead(_ action: AuditAction, subject: String = "", caller: Caller) async throws {
        try await store.appendAudit(AuditEntry(time: clock(), actor: caller.auditName, action: action,
                                               subject: subject, peer: caller.peer, detail: ""))
    }

    /// Records a refused request (bad token, denied call, exceeded limit) in the audit log.
    public func recordRefusal(method: String, code: String, reason: String, caller: Caller) async throws {
        try await store.appendAudit(AuditEntry(time: clock(), actor: caller.auditName, action: .refused,
                                               subject: method, peer: caller.peer, detail: "\(code): \(reason)"))
    }

    // MARK: Signing

    private func parseCSR(_ der: [UInt8]) throws -> CertificateSigningRequest {
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateSigningRequest(der: der)
        } catch let error as CryptoError {
            throw AuthorityError(.invalidArgument, error.message)
        }
        let key = csr.publicKeyDescription
        guard key.isAcceptedForLeaf else {
            throw AuthorityError(.invalidArgument, "CSR key \(key) is not accepted (P-256, P-384, Ed25519, RSA 2048-8192)")
        }
        return csr
    }

    private func sign(_ csr: CertificateSigningRequest, names: SubjectAltNames, ttlSeconds: Int64, now: Date,
                      issuer: SigningIssuer) throws -> CertificateRecord {
        // The profile is looked up again at issuance: a token or certificate from before a
        // configuration change gets today's rules.
        let profile = try policy.profile(for: names.uris[0])
        try policy.validateGrant(spiffeID: names.uris[0], dnsNames: names.dnsNames)
        if let profile, let allowed = profile.keyTypes {
            let key = csr.publicKeyDescription
            guard let type = key.keyType, allowed.contains(type) else {
                throw AuthorityError(.invalidArgument,
                                     "profile \(profile.name) accepts keys \(allowed.map(\.rawValue).sorted().joined(separator: ", ")), not \(key)")
            }
        }
        let lifetime = try policy.certificateLifetime(requested: ttlSeconds, profile: profile)
        // Never outlive the issuing CA: a chain is only as valid as its shortest link. The backdate
        // (for slow peer clocks) stays small against short lifetimes so agents' 2/3 point stays put.
        let notAfter = min(now.addingTimeInterval(lifetime), issuer.certificate.notAfter)
        let certificate: X509Certificate
        do {
            certificate = try issuer.signer.sign(csr, template: CertificateTemplate(
                role: .leaf, serial: try SerialNumber.random(), subject: LocalIssuance.leafSubject(spiffeID: names.uris[0]),
                notBefore: now.addingTimeInterval(-min(policy.backdate, lifetime / 10)), notAfter: notAfter, subjectAltNames: names,
                crlDistributionPoint: policy.crlDistributionPoint.map { Self.distributionPoint($0, issuer: issuer) }))
        } catch let error as CryptoError {
            // Nothing is stored for a certificate not signed: no row, no audit event, the token's use not consumed.
            throw AuthorityError(signing: error, otherwise: error.kind == .malformed ? .invalidArgument : .internal)
        }
        // The bootstrap pair (ids -1/0) is recorded as no issuer, which means the initial intermediate.
        return CertificateRecord(serial: certificate.serialHex, spiffeID: names.uris[0], dnsNames: names.dnsNames,
                                 ipAddresses: names.ipAddresses, notBefore: certificate.notBefore,
                                 notAfter: certificate.notAfter, issuedAt: now, der: certificate.der,
                                 issuerID: issuer.record.id > 0 ? issuer.record.id : nil)
    }

    /// The CRL URL written into a certificate: Vouch's own `…/crl` route gets the issuer's serial
    /// appended (`…/crl/<serial>`), so a party following it gets the CRL of the intermediate that
    /// signed the certificate, before and after a rotation; any other URL is written as given.
    static func distributionPoint(_ url: String, issuer: SigningIssuer) -> String {
        guard !issuer.record.serial.isEmpty, let parsed = URL(string: url), parsed.path.hasSuffix("/crl"),
              parsed.query == nil, parsed.fragment == nil else { return url }
        return url + "/" + issuer.serial
    }

    /// ISO 8601 in UTC; a format style, since building an ISO8601DateFormatter per call is costly.
    static func iso(_ date: Date) -> String { date.formatted(.iso8601) }
}
