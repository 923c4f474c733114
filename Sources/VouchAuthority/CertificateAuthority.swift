import Foundation
import VouchCrypto

/// The authority's decisions: who may get which certificate, token use,
/// renewal, revocation and the CRL. Transport and storage are injected.
public final class CertificateAuthority: Sendable {
    public let policy: IssuancePolicy
    public let material: CAMaterial
    public let revocations = RevocationRegistry()
    private let store: any AuthorityStore
    private let clock: @Sendable () -> Date
    private let crl: CRLPublisher
    private let tokenGuesses: FailedAttemptLimiter

    public init(store: any AuthorityStore, material: CAMaterial, policy: IssuancePolicy,
                clock: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.material = material
        self.policy = policy
        self.clock = clock
        self.crl = CRLPublisher(store: store, signer: material.signer, registry: revocations,
                                validity: policy.crlValidity, refreshInterval: policy.crlRefreshInterval)
        self.tokenGuesses = FailedAttemptLimiter(limit: policy.failedTokenAttemptsPerMinute, window: 60)
    }

    /// Loads persisted revocations so revoked certificates stay refused after a restart.
    public func start() async throws {
        revocations.add(try await store.revocations(afterSequence: 0))
    }

    public var rootsDER: [[UInt8]] { material.trustRoots.map(\.der) }
    public var chainDER: [[UInt8]] { [material.intermediate.der] }

    public func isAdmin(_ caller: Caller) -> Bool {
        caller.spiffeID.map { policy.adminIDs.contains($0) } ?? false
    }

    // MARK: Enroll

    public func enroll(token tokenText: String, csr csrDER: [UInt8], ttlSeconds: Int64, caller: Caller) async throws -> IssuedCertificate {
        let now = clock()
        try tokenGuesses.check(peer: caller.peer, now: now)
        let grant: TokenRecord
        do {
            grant = try await usableGrant(tokenText, now: now)
        } catch let error as AuthorityError where error.kind == .unauthenticated {
            tokenGuesses.recordFailure(peer: caller.peer, now: now)
            throw error
        }
        let csr = try parseCSR(csrDER)
        let requested = csr.subjectAltNames
        guard requested.others == 0 else {
            throw AuthorityError(.invalidArgument, "CSR requests SAN types other than URI, DNS and IP")
        }
        for uri in requested.uris where uri != grant.spiffeID {
            throw AuthorityError(.invalidArgument, "CSR requests URI SAN \(uri), but the token grants \(grant.spiffeID)")
        }
        for name in requested.dnsNames where !grant.dnsNames.contains(name.lowercased()) {
            throw AuthorityError(.invalidArgument, "CSR requests DNS SAN \(name), which the token does not grant")
        }
        var ips: [String] = []
        for ip in requested.ipAddresses {
            guard let canonical = IPAddress.canonical(ip), grant.ipAddresses.contains(canonical) else {
                throw AuthorityError(.invalidArgument, "CSR requests IP SAN \(ip), which the token does not grant")
            }
            ips.append(canonical)
        }
        // A CSR without SANs gets the whole grant; otherwise exactly what it asked for, plus the SPIFFE ID.
        let names = requested.isEmpty
            ? SubjectAltNames(uris: [grant.spiffeID], dnsNames: grant.dnsNames, ipAddresses: grant.ipAddresses)
            : SubjectAltNames(uris: [grant.spiffeID], dnsNames: requested.dnsNames.map { $0.lowercased() }, ipAddresses: ips)

        var record = try sign(csr, names: names, ttlSeconds: ttlSeconds, now: now)
        record.tokenID = grant.id
        let actor = "token:\(grant.id)"
        try await store.recordEnrollment(tokenID: grant.id, now: now, certificate: record, audit: [
            AuditEntry(time: now, actor: actor, action: "token.use", subject: grant.id, peer: caller.peer, detail: grant.spiffeID),
            AuditEntry(time: now, actor: actor, action: "enroll", subject: record.serial, peer: caller.peer,
                       detail: "\(grant.spiffeID) until \(Self.iso(record.notAfter))"),
        ])
        return IssuedCertificate(record: record, chain: chainDER, roots: rootsDER)
    }

    /// The stored grant of a well-formed token whose secret matches, if it is still usable.
    private func usableGrant(_ tokenText: String, now: Date) async throws -> TokenRecord {
        guard let token = EnrollmentToken.parse(tokenText) else {
            throw AuthorityError(.unauthenticated, tokenText.isEmpty ? "enrollment token missing" : "enrollment token is malformed")
        }
        guard let grant = try await store.token(id: token.id), constantTimeEquals(grant.secretHash, token.secretHash) else {
            throw AuthorityError(.unauthenticated, "enrollment token is not valid")
        }
        try Self.checkUsable(grant, now: now)
        return grant
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
        let csr = try parseCSR(csrDER)
        guard let currentKey = CertificateDER.subjectPublicKeyInfo(current.der) else {
            throw AuthorityError(.internal, "stored certificate \(current.serial) is not valid DER")
        }
        guard try csr.publicKeyDER != Array(currentKey) else {
            throw AuthorityError(.invalidArgument, "the CSR reuses the current certificate's key; renewal needs a new key")
        }
        let names = SubjectAltNames(uris: [current.spiffeID], dnsNames: current.dnsNames, ipAddresses: current.ipAddresses)
        var record = try sign(csr, names: names, ttlSeconds: ttlSeconds, now: now)
        record.renewedFrom = current.serial
        record.tokenID = current.tokenID
        try await store.recordRenewal(certificate: record, previousSerial: current.serial, audit: [
            AuditEntry(time: now, actor: current.spiffeID, action: "renew", subject: record.serial, peer: caller.peer,
                       detail: "from \(current.serial) until \(Self.iso(record.notAfter))"),
        ])
        return IssuedCertificate(record: record, chain: chainDER, roots: rootsDER)
    }

    /// The stored record of a caller's certificate, refusing revoked or unknown ones.
    private func standing(ofSerial serial: String, now: Date) async throws -> CertificateRecord {
        guard let record = try await store.certificate(serial: serial) else {
            throw AuthorityError(.failedPrecondition, "certificate \(serial) was not issued by this CA")
        }
        if record.revokedAt != nil { throw AuthorityError(.failedPrecondition, "certificate \(serial) is revoked") }
        if record.notAfter <= now { throw AuthorityError(.failedPrecondition, "certificate \(serial) has expired") }
        return record
    }

    /// Refuses a caller whose certificate has been revoked since its connection was made.
    public func checkStanding(_ caller: Caller) throws {
        if let serial = caller.serial, revocations.isRevoked(serial: serial) {
            throw AuthorityError(.failedPrecondition, "client certificate \(serial) is revoked")
        }
    }

    // MARK: Revoke

    /// RFC 5280 CRLReason codes a revocation may carry (7 is unused, 8 removeFromCRL is for delta CRLs).
    public static let revocationReasons: [Int: String] = [
        0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
        5: "cessationOfOperation", 6: "certificateHold", 9: "privilegeWithdrawn", 10: "aACompromise",
    ]

    public func revoke(serial serialText: String, reason: Int, caller: Caller) async throws -> RevocationRecord {
        let now = clock()
        guard let serial = SerialNumber.canonicalHex(serialText) else {
            throw AuthorityError(.invalidArgument, "\(serialText.debugDescription) is not a hex serial number")
        }
        guard let reasonName = Self.revocationReasons[reason] else {
            throw AuthorityError(.invalidArgument, "\(reason) is not a CRLReason code Vouch accepts (0-6, 9, 10)")
        }
        guard let callerID = caller.spiffeID else {
            throw AuthorityError(.unauthenticated, "Revoke needs a client certificate")
        }
        guard let target = try await store.certificate(serial: serial) else {
            throw AuthorityError(.notFound, "no certificate with serial \(serial)")
        }
        guard isAdmin(caller) || target.spiffeID == callerID else {
            throw AuthorityError(.permissionDenied, "\(callerID) may not revoke \(serial) of \(target.spiffeID)")
        }
        guard let revocation = try await store.revoke(serial: serial, reason: reason, at: now, audit: AuditEntry(
            time: now, actor: callerID, action: "revoke", subject: serial, peer: caller.peer, detail: "\(target.spiffeID) \(reasonName)"))
        else { throw AuthorityError(.notFound, "no certificate with serial \(serial)") }
        revocations.add([revocation])
        return revocation
    }

    public func revocations(afterSequence: Int64) async throws -> [RevocationRecord] {
        try await store.revocations(afterSequence: afterSequence)
    }

    public func currentCRL() async throws -> CRLSnapshot {
        try await crl.snapshot(now: clock())
    }

    /// A signed OCSP response (RFC 6960) for a DER OCSP request.
    public func ocspResponse(to request: [UInt8]) async -> [UInt8] {
        let now = clock()
        return await OCSPResponder(signer: material.signer, validity: policy.crlRefreshInterval).respond(to: request, now: now) { serial in
            guard let record = try? await store.certificate(serial: serial) else { return .unknown }
            if let revokedAt = record.revokedAt { return .revoked(at: revokedAt, reason: record.revocationReason ?? 0) }
            return .good
        }
    }

    // MARK: Tokens

    public func createToken(spiffeID: String, dnsNames: [String], ipAddresses: [String], ttlSeconds: Int64, uses: Int,
                            caller: Caller) async throws -> (token: EnrollmentToken, record: TokenRecord) {
        let now = clock()
        try policy.validateSPIFFEID(spiffeID)
        let dns = dnsNames.map { $0.lowercased() }
        for name in dns where !IdentityRules.isValidDNSName(name) {
            throw AuthorityError(.invalidArgument, "\(name.debugDescription) is not a valid DNS name")
        }
        try policy.validateGrant(spiffeID: spiffeID, dnsNames: dns)
        let ips = try ipAddresses.map { ip -> String in
            guard let canonical = IPAddress.canonical(ip) else { throw AuthorityError(.invalidArgument, "\(ip.debugDescription) is not an IP address") }
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
            time: now, actor: caller.auditName, action: "token.create", subject: token.id, peer: caller.peer,
            detail: "\(spiffeID) uses=\(record.usesAllowed) until \(Self.iso(record.expiresAt))"))
        return (token, record)
    }

    public func listTokens() async throws -> [TokenRecord] { try await store.listTokens() }

    public func revokeToken(id: String, caller: Caller) async throws {
        let now = clock()
        let found = try await store.revokeToken(id: id.lowercased(), audit: AuditEntry(
            time: now, actor: caller.auditName, action: "token.revoke", subject: id, peer: caller.peer, detail: ""))
        guard found else { throw AuthorityError(.notFound, "no token with id \(id)") }
    }

    // MARK: Queries

    public func certificate(serial serialText: String) async throws -> CertificateRecord {
        guard let serial = SerialNumber.canonicalHex(serialText) else {
            throw AuthorityError(.invalidArgument, "\(serialText.debugDescription) is not a hex serial number")
        }
        guard let record = try await store.certificate(serial: serial) else {
            throw AuthorityError(.notFound, "no certificate with serial \(serial)")
        }
        return record
    }

    public func listCertificates(identityGlob: String?, status: CertificateStatus?, expiringWithin: TimeInterval?,
                                 limit: Int, beforeID: Int64?) async throws -> [CertificateRecord] {
        try await store.listCertificates(CertificateQuery(identityGlob: identityGlob, status: status, expiringWithin: expiringWithin,
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
    public func auditAdminRead(_ method: String, subject: String = "", caller: Caller) async throws {
        try await store.appendAudit(AuditEntry(time: clock(), actor: caller.auditName, action: "admin.\(method)",
                                               subject: subject, peer: caller.peer, detail: ""))
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

    private func sign(_ csr: CertificateSigningRequest, names: SubjectAltNames, ttlSeconds: Int64, now: Date) throws -> CertificateRecord {
        // The profile is looked up again at issuance: a token or certificate from before a
        // configuration change gets today's rules.
        let profile = try policy.profile(for: names.uris[0])
        if let profile, let allowed = profile.keyTypes {
            let key = csr.publicKeyDescription
            guard let type = CertificateProfile.keyTypeName(family: key.family.rawValue, curve: key.curve), allowed.contains(type) else {
                throw AuthorityError(.invalidArgument,
                                     "profile \(profile.name) accepts keys \(allowed.sorted().joined(separator: ", ")), not \(key)")
            }
        }
        let lifetime = try policy.certificateLifetime(requested: ttlSeconds, profile: profile)
        // Never outlive the issuing CA: a chain is only as valid as its shortest link. The backdate
        // (for slow peer clocks) stays small against short lifetimes so agents' 2/3 point stays put.
        let notAfter = min(now.addingTimeInterval(lifetime), material.intermediate.notAfter)
        let certificate: X509Certificate
        do {
            certificate = try material.signer.sign(csr, template: CertificateTemplate(
                role: .leaf, serial: try SerialNumber.random(), subject: [("O", "Vouch")],
                notBefore: now.addingTimeInterval(-min(policy.backdate, lifetime / 10)), notAfter: notAfter, subjectAltNames: names,
                crlDistributionPoint: policy.crlDistributionPoint))
        } catch let error as CryptoError {
            throw AuthorityError(error.kind == .malformed ? .invalidArgument : .internal, error.message)
        }
        return CertificateRecord(serial: certificate.serialHex, spiffeID: names.uris[0], dnsNames: names.dnsNames,
                                 ipAddresses: names.ipAddresses, notBefore: certificate.notBefore,
                                 notAfter: certificate.notAfter, issuedAt: now, der: certificate.der)
    }

    /// ISO 8601 in UTC; a format style, since building an ISO8601DateFormatter per call is costly.
    static func iso(_ date: Date) -> String { date.formatted(.iso8601) }
}
