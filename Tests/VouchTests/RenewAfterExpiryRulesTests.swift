import Foundation
import Testing
import VouchAuthority
import VouchCrypto
@testable import VouchTLS
import X509

/// `renew_after_expiry` on a moved clock: the authority's rule (who may renew after expiry, for how
/// long) and the handshake's (which expired certificates pass, and until when).
struct RenewAfterExpiryRulesTests {
    static let web = "spiffe://example.org/svc/web"

    @Test func anExpiredCertificateRenewsOnlyWithinTheWindowUnrevokedAndNotRenewedAlready() async throws {
        let harness = try AuthorityHarness { $0.renewAfterExpiry = 3600 }
        let expiring = try await harness.enroll(try await harness.token(Self.web), ttl: 60)
        let revoked = try await harness.enroll(try await harness.token(Self.web), ttl: 60)
        let renewedEarly = try await harness.enroll(try await harness.token(Self.web), ttl: 60)
        let late = try await harness.enroll(try await harness.token(Self.web), ttl: 60)
        _ = try await harness.authority.revoke(serial: revoked.record.serial, reason: 1, caller: AuthorityHarness.admin)
        _ = try await harness.renew(renewedEarly.caller)
        harness.clock.advance(60 + 1800)

        let renewed = try await harness.renew(expiring.caller)
        #expect(renewed.record.renewedFrom == expiring.record.serial)
        #expect(renewed.record.notAfter > harness.clock.now)
        #expect(await refusal { try await harness.renew(expiring.caller) } == .failedPrecondition, "renewed once: the lineage moved on")
        #expect(await refusal { try await harness.renew(revoked.caller) } == .failedPrecondition, "revoked")
        #expect(await refusal { try await harness.renew(renewedEarly.caller) } == .failedPrecondition, "renewed before it expired")
        harness.clock.advance(1801)
        #expect(await refusal { try await harness.renew(late.caller) } == .failedPrecondition, "past the window")
    }

    @Test func offAnExpiredCertificateNeverRenews() async throws {
        let harness = try AuthorityHarness()
        let enrolled = try await harness.enroll(try await harness.token(Self.web), ttl: 60)
        harness.clock.advance(61)
        #expect(await refusal { try await harness.renew(enrolled.caller) } == .failedPrecondition)
    }

    @Test func theHandshakeAcceptsAnExpiredCertificateOnlyWithinTheGrace() throws {
        let now = Date()
        let material = try TestCA.material(now: now)
        let issued = try LocalIssuance.issue(signer: material.signer, spiffeID: Self.web, lifetime: 600, now: now)
        let leaf = try Certificate(derEncoded: issued.certificate.der)
        let notAfter = leaf.notValidAfter
        #expect(PeerCertificateVerifier.expiryInGrace(leaf, grace: 3600, now: notAfter.addingTimeInterval(-1)) == nil, "not expired")
        #expect(PeerCertificateVerifier.expiryInGrace(leaf, grace: 0, now: notAfter.addingTimeInterval(10)) == nil, "off")
        #expect(PeerCertificateVerifier.expiryInGrace(leaf, grace: 3600, now: notAfter.addingTimeInterval(3600))
            == notAfter.addingTimeInterval(-1), "validated at its last valid second")
        #expect(PeerCertificateVerifier.expiryInGrace(leaf, grace: 3600, now: notAfter.addingTimeInterval(3601)) == nil, "past the grace")
    }
}
