import Foundation
import Testing
import VouchAuthority
import VouchCrypto

/// The authority's enroll, renew, revoke and token rules, in process over the in-memory store
/// with a clock moved by hand: what the end-to-end tests show over TLS, here in milliseconds,
/// and the rules about time without waiting for it.
@Suite("CertificateAuthority rules")
struct CertificateAuthorityRulesTests {
    static let web = "spiffe://example.org/svc/web"

    @Test func aTokenEnrollsOnceAndOnlyUntilItExpires() async throws {
        let harness = try AuthorityHarness()
        let token = try await harness.token(Self.web, ttl: 600)
        let enrolled = try await harness.enroll(token)
        #expect(enrolled.record.spiffeID == Self.web)
        #expect(await refusal { try await harness.enroll(token) } == .unauthenticated, "used")

        let late = try await harness.token(Self.web, ttl: 600)
        harness.clock.advance(601)
        #expect(await refusal { try await harness.enroll(late) } == .unauthenticated, "expired")
    }

    /// Catch-up reads of new revocations (every GetCRL on a shared store, watchers failing over)
    /// are shared: a flood of callers holds one database read at a time, and each caller still
    /// sees what was committed before it asked.
    @Test func concurrentCatchUpsShareReadsAndSeeEarlierCommits() async throws {
        let harness = try AuthorityHarness()
        let enrolled = try await harness.enroll(try await harness.token(Self.web))
        harness.store.revocationReads.withLock { $0 = 0 }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<200 { group.addTask { try await harness.authority.catchUpRevocations() } }
            try await group.waitForAll()
        }
        let reads = harness.store.revocationReads.withLock { $0 }
        #expect(reads >= 1 && reads <= 10, "\(reads) reads for 200 callers")
        // Committed behind the registry's back (as by another replica), then asked for: read.
        _ = try await harness.store.revoke(serial: enrolled.record.serial, reason: 1, at: harness.clock.now, withRenewals: false,
                                           budget: nil) { serial, _ in
            AuditEntry(time: harness.clock.now, actor: "other replica", action: .revoke, subject: serial, peer: "", detail: "")
        }
        #expect(!harness.authority.revocations.isRevoked(serial: enrolled.record.serial))
        #expect(try await harness.authority.catchUpRevocations() == 1)
        #expect(harness.authority.revocations.isRevoked(serial: enrolled.record.serial))
    }

    /// The right secret of a used-up token is no guess: however often it comes, from one address,
    /// the answer stays "already used", never the guessing limit.
    @Test func theRightSecretOfAUsedUpTokenIsNotCountedAsAGuess() async throws {
        let harness = try AuthorityHarness()
        let token = try await harness.token(Self.web, uses: 2)
        _ = try await harness.enroll(token)
        _ = try await harness.enroll(token)
        for _ in 0..<25 {
            let error = await #expect(throws: AuthorityError.self) { try await harness.enroll(token) }
            #expect(error?.kind == .unauthenticated && error?.message.contains("already used") == true, "\(String(describing: error))")
        }
        // Wrong secrets for the same token still hit the limit.
        let forged = String(token.dropLast(4)) + "AAAA"
        var kinds: [AuthorityError.Kind] = []
        for _ in 0..<12 { kinds.append(await refusal { try await harness.enroll(forged) } ?? .internal) }
        #expect(kinds.prefix(10).allSatisfy { $0 == .unauthenticated } && kinds.suffix(2).allSatisfy { $0 == .resourceExhausted }, "\(kinds)")
    }

    @Test(arguments: [
        ("vch.0123456789abcdef.\(String(repeating: "A", count: 43))", AuthorityError.Kind.unauthenticated),  // unknown id
        ("vch.０１２３４５６７８９ａｂｃｄｅｆ.\(String(repeating: "A", count: 43))", .unauthenticated),  // fullwidth id
        ("not a token", .unauthenticated),
        ("", .unauthenticated),
    ])
    func malformedOrUnknownTokensAreUnauthenticated(token: String, kind: AuthorityError.Kind) async throws {
        let harness = try AuthorityHarness()
        #expect(await refusal { try await harness.enroll(token) } == kind)
    }

    @Test func theCertificateCarriesExactlyWhatTheGrantAllows() async throws {
        let harness = try AuthorityHarness()
        let token = try await harness.token(Self.web, dns: ["web.internal"], ips: ["10.0.0.1"], uses: 4)
        let whole = try await harness.enroll(token)
        #expect(whole.record.dnsNames == ["web.internal"] && whole.record.ipAddresses == ["10.0.0.1"], "no SANs asked: the whole grant")
        for names in [SubjectAltNames(dnsNames: ["evil.internal"]), SubjectAltNames(ipAddresses: ["10.0.0.2"]),
                      SubjectAltNames(uris: ["spiffe://example.org/svc/other"])] {
            #expect(await refusal { try await harness.enroll(token, names: names) } == .invalidArgument, "\(names)")
        }
    }

    @Test func failedAttemptsLockOnlyTheAttackedTokenFromThatAddress() async throws {
        let harness = try AuthorityHarness()
        let victim = try await harness.token(Self.web), attacked = try await harness.token("spiffe://example.org/svc/db")
        let prefix = String(attacked.dropLast(4))
        for guess in 0..<10 {
            #expect(await refusal { try await harness.enroll(prefix + String(format: "%04d", guess)) } == .unauthenticated)
        }
        #expect(await refusal { try await harness.enroll(attacked) } == .resourceExhausted, "locked, even with its secret")
        #expect(await refusal { try await harness.enroll(attacked, peer: "ipv4:10.9.9.9:1") } == nil, "from another address")
        _ = try await harness.enroll(victim)

        let again = try await harness.token("spiffe://example.org/svc/db")
        let againPrefix = String(again.dropLast(4))
        for guess in 0..<10 { _ = await refusal { try await harness.enroll(againPrefix + String(format: "%04d", guess)) } }
        harness.clock.advance(61)
        #expect(await refusal { try await harness.enroll(again) } == nil, "failures age out after a minute")
    }

    @Test func onlyTheNewestCertificateOfALineageRenews() async throws {
        let harness = try AuthorityHarness()
        let first = try await harness.enroll(try await harness.token(Self.web))
        let second = try await harness.renew(first.caller)
        #expect(second.record.renewedFrom == first.record.serial)

        harness.clock.advance(30)
        let retried = try await harness.renew(first.caller)  // a lost response, retried within the window
        #expect(try await harness.store.certificate(serial: second.record.serial)?.revocationReason == 4)
        #expect(harness.authority.revocations.isRevoked(serial: second.record.serial))
        #expect(await refusal { try await harness.renew(first.caller) } == .failedPrecondition, "one retry only")

        let third = try await harness.renew(retried.caller)
        harness.clock.advance(61)
        #expect(await refusal { try await harness.renew(retried.caller) } == .failedPrecondition, "outside the window")
        _ = try await harness.renew(third.caller)
    }

    @Test func renewalNeedsANewKeyAndALiveCertificate() async throws {
        let harness = try AuthorityHarness()
        let enrolled = try await harness.enroll(try await harness.token(Self.web), ttl: 3600)
        #expect(await refusal { try await harness.renew(enrolled.caller, key: enrolled.key) } == .invalidArgument)
        harness.clock.advance(3601)
        #expect(await refusal { try await harness.renew(enrolled.caller) } == .failedPrecondition, "expired")
        let unknown = Caller(credential: .certificate(spiffeID: Self.web, serial: "0123456789abcdef"), peer: "x")
        #expect(await refusal { try await harness.renew(unknown) } == .failedPrecondition, "not issued here")
    }

    @Test func keyCompromiseRevokesTheLineageOtherReasonsOneCertificate() async throws {
        let harness = try AuthorityHarness()
        let a = try await harness.enroll(try await harness.token(Self.web))
        let b = try await harness.renew(a.caller)
        let c = try await harness.renew(b.caller)
        _ = try await harness.authority.revoke(serial: b.record.serial, reason: 4, caller: AuthorityHarness.admin)
        #expect(!harness.authority.revocations.isRevoked(serial: c.record.serial))
        _ = try await harness.authority.revoke(serial: a.record.serial, reason: 1, caller: AuthorityHarness.admin)
        for serial in [a.record.serial, b.record.serial, c.record.serial] {
            #expect(harness.authority.revocations.isRevoked(serial: serial))
        }
        #expect(try await harness.store.certificate(serial: b.record.serial)?.revocationReason == 4, "an earlier revocation is kept")
        #expect(await refusal { try await harness.renew(c.caller) } == .failedPrecondition)
    }

    @Test func workloadsRevokeOnlyTheirOwnAndOnlySoManyADay() async throws {
        let harness = try AuthorityHarness { $0.selfRevocationLimit = 2 }
        let token = try await harness.token(Self.web, uses: 5)
        var mine: [(record: CertificateRecord, caller: Caller, key: PrivateKey)] = []
        for _ in 0..<4 { mine.append(try await harness.enroll(token)) }
        let other = try await harness.enroll(try await harness.token("spiffe://example.org/svc/db"))
        #expect(await refusal { try await harness.authority.revoke(serial: other.record.serial, reason: 1, caller: mine[0].caller) }
                == .permissionDenied)
        _ = try await harness.authority.revoke(serial: mine[0].record.serial, reason: 1, caller: mine[0].caller)
        _ = try await harness.authority.revoke(serial: mine[1].record.serial, reason: 1, caller: mine[1].caller)
        #expect(await refusal { try await harness.authority.revoke(serial: mine[2].record.serial, reason: 1, caller: mine[2].caller) }
                == .resourceExhausted)
        harness.clock.advance(24 * 3600 + 1)
        _ = try await harness.authority.revoke(serial: mine[2].record.serial, reason: 1, caller: mine[2].caller)
    }

    /// Renew and retry in a loop revokes a child each time: those count too, as do the renewals a
    /// keyCompromise takes with it.
    @Test func retriesAndLineageRevocationsCountAgainstTheDailyLimit() async throws {
        let harness = try AuthorityHarness { $0.selfRevocationLimit = 2 }
        var current = try await harness.enroll(try await harness.token(Self.web)).caller
        for _ in 0..<2 {
            _ = try await harness.renew(current)
            current = try await harness.renew(current).caller  // the retry revokes the first child
        }
        _ = try await harness.renew(current)
        #expect(await refusal { try await harness.renew(current) } == .resourceExhausted, "a third retry-revocation")

        let other = try AuthorityHarness { $0.selfRevocationLimit = 3 }
        let first = try await other.enroll(try await other.token(Self.web))
        let second = try await other.renew(first.caller)
        let third = try await other.renew(second.caller)
        let fourth = try await other.renew(third.caller)
        #expect(await refusal { try await other.authority.revoke(serial: first.record.serial, reason: 1, caller: fourth.caller) }
                == .resourceExhausted, "one keyCompromise of a four-certificate lineage is past a limit of three")
        #expect(!other.authority.revocations.isRevoked(serial: fourth.record.serial), "nothing revoked")
        _ = try await other.authority.revoke(serial: second.record.serial, reason: 1, caller: fourth.caller)  // revokes 3
        let spare = try await other.enroll(try await other.token(Self.web))
        #expect(await refusal { try await other.authority.revoke(serial: spare.record.serial, reason: 1, caller: spare.caller) }
                == .resourceExhausted, "the lineage counted three")
    }

    @Test(arguments: ["ａａ", "0x12", "12 34", "g1", String(repeating: "a", count: 41), ""])
    func revokeRefusesWhatIsNotAHexSerial(serial: String) async throws {
        let harness = try AuthorityHarness()
        #expect(await refusal { try await harness.authority.revoke(serial: serial, reason: 1, caller: AuthorityHarness.admin) }
                == .invalidArgument)
    }

    @Test(arguments: [0, 1, 2, 3, 4, 5, 6, 9, 10])
    func everyRFC5280ReasonIsAccepted(reason: Int) async throws {
        let harness = try AuthorityHarness()
        let enrolled = try await harness.enroll(try await harness.token(Self.web))
        let revoked = try await harness.authority.revoke(serial: enrolled.record.serial, reason: reason, caller: AuthorityHarness.admin)
        #expect(revoked.reason == reason)
    }

    @Test(arguments: [-1, 7, 8, 11, Int(Int32.max)])
    func otherReasonCodesAreInvalid(reason: Int) async throws {
        let harness = try AuthorityHarness()
        let enrolled = try await harness.enroll(try await harness.token(Self.web))
        #expect(await refusal { try await harness.authority.revoke(serial: enrolled.record.serial, reason: reason, caller: AuthorityHarness.admin) }
                == .invalidArgument)
    }

    @Test(arguments: [
        ("spiffe://example.org/vouch/admin", AuthorityError.Kind.permissionDenied),
        ("spiffe://example.org/vouch/server", .permissionDenied),
        ("spiffe://example.org/vouch/anything", .permissionDenied),
        ("spiffe://example.org/ops/alice", .permissionDenied),  // a configured admin
        ("spiffe://other.org/svc/web", .invalidArgument),
        ("spiffe://example.org/", .invalidArgument),
        ("spiffe://example.org/svc/../admin", .invalidArgument),
        ("https://example.org/svc/web", .invalidArgument),
    ])
    func tokensAreRefusedForReservedOrMalformedIdentities(id: String, kind: AuthorityError.Kind) async throws {
        let harness = try AuthorityHarness { $0.adminIDs.insert("spiffe://example.org/ops/alice") }
        #expect(await refusal { try await harness.token(id) } == kind)
    }

    @Test func tokenGrantsAreBounded() async throws {
        let harness = try AuthorityHarness()
        let names = (0...CertificateAuthority.maximumGrantedNames).map { "n\($0).example.org" }
        #expect(await refusal { try await harness.token(Self.web, dns: names) } == .invalidArgument)
        #expect(await refusal { try await harness.token(Self.web, dns: ["bad_name"]) } == .invalidArgument)
        #expect(await refusal { try await harness.token(Self.web, ips: ["127.0.0.1\u{0}evil"]) } == .invalidArgument)
        #expect(await refusal { try await harness.token(Self.web, ttl: -1) } == .invalidArgument)
        #expect(await refusal { try await harness.token(Self.web, uses: 1001) } == .invalidArgument)
        let huge = String(repeating: "a", count: 100_000)
        let message: String
        do {
            _ = try await harness.token(huge)
            message = ""
        } catch let error as AuthorityError {
            message = error.message
        }
        #expect(message.utf8.count < 200, "the error quotes a bounded part of the input: \(message.prefix(120))")
    }

    @Test func aNarrowedProfileAppliesAtEnrollmentAndRenewal() async throws {
        var profile = CertificateProfile(name: "web", spiffeIDPatterns: ["spiffe://example.org/svc/*"], dnsPatterns: ["*.old.org", "*.new.org"])
        let wide = try AuthorityHarness { $0.profiles = [profile] }
        let token = try await wide.token(Self.web, dns: ["a.old.org"], uses: 2)
        let enrolled = try await wide.enroll(token)
        profile.dnsPatterns = ["*.new.org"]
        let narrow = CertificateAuthority(store: wide.store, material: wide.authority.material,
                                          policy: { var policy = wide.authority.policy; policy.profiles = [profile]; return policy }(),
                                          clock: { [clock = wide.clock] in clock.now })
        let csr = try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der
        #expect(await refusal { try await narrow.enroll(token: token, csr: csr, ttlSeconds: 0, caller: Caller(credential: .none, peer: "x")) }
                == .invalidArgument)
        #expect(await refusal { try await narrow.renew(csr: csr, ttlSeconds: 0, caller: enrolled.caller) } == .invalidArgument)
    }
}
