import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import VouchTLS
import XCTest

/// `renew_after_expiry`: within the window an expired certificate may renew, and do nothing else;
/// revoked or already renewed ones may not; off (the default), the handshake refuses it as before.
final class RenewAfterExpiryTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    /// Enrolls with 5 s certificates (the shortest lifetime), returns once they have expired.
    private func expiredIdentities(_ ca: CAFixture, names: [String]) async throws -> [VouchClient.Credentials] {
        var identities: [VouchClient.Credentials] = []
        var notAfter = Date()
        for name in names {
            let key = try PrivateKey(generating: .p256)
            let response = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: key, ttl: 5)
            identities.append(try ca.writeIdentity(response, key: key, name: name))
            notAfter = max(notAfter, try X509Certificate(der: Array(response.certificate)).notAfter)
        }
        try await Task.sleep(for: .seconds(max(0, notAfter.timeIntervalSinceNow) + 1.2))
        // (+1.2 s: TLS validation counts whole seconds, so the second of notAfter still passes.)
        return identities
    }

    func testWithinTheWindowAnExpiredCertificateMayRenewAndNothingElse() async throws {
        let ca = try CAFixture { try ServerProcess(directory: $0, extraArguments: ["--renew-after-expiry", "1h"]) }
        let key = try PrivateKey(generating: .p256)
        let response = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: key, ttl: 5)
        let live = try ca.writeIdentity(response, key: key, name: "renewed-before")
        let serial = try X509Certificate(der: Array(response.certificate)).serialHex
        // Three more, then: one renewed while valid (its successor continues the lineage), one revoked.
        let identities = try await {
            _ = try await ca.renew(with: live, newKey: try PrivateKey(generating: .p256))
            return try await expiredIdentities(ca, names: ["expired", "revoked"])
        }()
        let (expired, revoked) = (identities[0], identities[1])
        let revokedSerial = try X509Certificate(pem: String(contentsOfFile: revoked.certificatePEMPath!, encoding: .utf8)).serialHex
        _ = try await ca.revoke(revokedSerial, reason: 1, as: ca.admin)

        await assertRPCError(.failedPrecondition, "another call with an expired certificate", reason: .certificateExpired) {
            try await ca.ca(expired) { try await $0.getTrustBundle(Vouch_V1_TrustBundleRequest()) }
        }
        await assertRPCError(.failedPrecondition, "revoking with an expired certificate", reason: .certificateExpired) {
            try await ca.revoke(revokedSerial, as: expired)
        }
        await assertRPCError(.unavailable, "an expired and revoked certificate (refused at the handshake, as when valid)") {
            try await ca.renew(with: revoked, newKey: try PrivateKey(generating: .p256))
        }
        await assertRPCError(.failedPrecondition, "an expired certificate renewed before it expired", reason: .certificateExpired) {
            try await ca.renew(with: live, newKey: try PrivateKey(generating: .p256))
        }
        let renewed = try await ca.renew(with: expired, newKey: try PrivateKey(generating: .p256))
        let leaf = try X509Certificate(der: Array(renewed.certificate))
        XCTAssertEqual(leaf.spiffeID, Self.web)
        XCTAssertGreaterThan(leaf.notAfter, Date(), "a valid certificate again")
        XCTAssertNotEqual(leaf.serialHex, serial)
    }

    func testOffAnExpiredCertificateIsRefusedAtTheHandshake() async throws {
        let ca = try CAFixture()
        let expired = try await expiredIdentities(ca, names: ["expired"])[0]
        await assertRPCError(.unavailable, "renew with an expired certificate") {
            try await ca.renew(with: expired, newKey: try PrivateKey(generating: .p256))
        }
        XCTAssertTrue(eventually { ca.server.log.contains("does not chain to a trusted root") }, ca.server.log)
    }

    // MARK: The agent

    /// A `vouch server` on the fixture's port again (after `server.kill()`), with `arguments`.
    private func restart(_ ca: CAFixture, _ arguments: [String]) throws -> ServerProcess {
        try ServerProcess(directory: ca.caDir, port: ca.server.port, extraArguments: arguments)
    }

    /// Starts an agent on 6 s certificates, deletes its token, kills the CA, and returns once the
    /// agent's certificate has expired.
    private func agentExpiredWhileTheCAWasDown(_ ca: CAFixture) async throws -> (AgentProcess, IdentityFiles, serial: String) {
        let (agent, out) = try ca.startAgent(spiffeID: Self.web, ttl: "6s", extra: ["--max-backoff", "1s"])
        try FileManager.default.removeItem(atPath: ca.root + "/token")
        let files = IdentityFiles(directory: out)
        let first = try X509Certificate(pem: String(contentsOfFile: files.certificate, encoding: .utf8))
        ca.server.kill()
        // Past the second of notAfter: TLS validation counts whole seconds.
        try await Task.sleep(for: .seconds(max(0, first.notAfter.timeIntervalSinceNow) + 1.2))
        return (agent, files, first.serialHex)
    }

    func testExpiredCertificateRenewsWhenRenewAfterExpiryIsOn() async throws {
        let arguments = ["--renew-after-expiry", "1h"]
        let ca = try CAFixture { try ServerProcess(directory: $0, extraArguments: arguments) }
        let (agent, files, first) = try await agentExpiredWhileTheCAWasDown(ca)
        defer { agent.stop() }
        XCTAssertTrue(agent.log.contains("renewal failed"), agent.log)
        let server = try restart(ca, arguments)
        defer { server.stop() }
        XCTAssertTrue(eventually(timeout: 10) { agent.log.contains("rotated") }, "renewed once the CA was back: \(agent.log)")
        let renewed = try X509Certificate(pem: String(contentsOfFile: files.certificate, encoding: .utf8))
        XCTAssertNotEqual(renewed.serialHex, first)
        XCTAssertGreaterThan(renewed.notAfter, Date())
        XCTAssertFalse(agent.log.contains("create a new token"), "no new token needed: \(agent.log)")
        XCTAssertTrue(agent.process.isRunning)
    }

    func testExpiredCertificateIsRefusedWhenRenewAfterExpiryIsOff() async throws {
        let ca = try CAFixture()
        let (agent, files, _) = try await agentExpiredWhileTheCAWasDown(ca)
        defer { agent.stop() }
        XCTAssertTrue(eventually(timeout: 5) { agent.log.contains("and the CA will not renew it: create a new token") }, agent.log)
        // The CA, back, refuses the expired certificate at the handshake as before.
        let server = try restart(ca, [])
        defer { server.stop() }
        let expired = VouchClient.Credentials(bundlePEMPath: ca.caDir + "/bundle.pem", certificatePEMPath: files.certificate,
                                              keyPEMPath: files.key)
        await assertRPCError(.unavailable, "renew with the agent's expired certificate") {
            try await VouchClient.with(server: ca.address, credentials: expired) { client in
                try await Vouch_V1_CertificateAuthority.Client(wrapping: client)
                    .renew(CAFixture.renewRequest(try PrivateKey(generating: .p256)), options: VouchClient.options())
            }
        }
        XCTAssertTrue(eventually { server.log.contains("does not chain to a trusted root") }, server.log)
        XCTAssertFalse(agent.log.contains("rotated"), agent.log)
    }
}
