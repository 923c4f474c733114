import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// Whoever holds the key of an intermediate its root revoked (keyCompromise) mints a leaf and
/// presents it with that intermediate. The listeners validate the chain the client sends, so the
/// CA's and an agent's must each refuse the revoked intermediate in it, not only a revoked leaf.
final class RevokedIntermediateHandshakeTests: XCTestCase {
    func testALeafMintedWithARevokedIntermediatesKeyIsRefusedByTheCAAndAnAgent() async throws {
        let ca = try CAFixture()
        let old = try CertificateSigner(certificate: X509Certificate(pem: String(contentsOfFile: ca.caDir + "/intermediate.pem", encoding: .utf8)),
                                        key: PrivateKey(pem: String(contentsOfFile: ca.caDir + "/intermediate_key.pem", encoding: .utf8)))
        let root = try X509Certificate(pem: String(contentsOfFile: ca.caDir + "/root.pem", encoding: .utf8))
        XCTAssertEqual(try vouch("ca", "intermediate", "rotate", "--dir", ca.caDir).status, 0)
        // The agent enrolls under the new intermediate, so its own chain stays good.
        XCTAssertTrue(eventually(timeout: 5) { ca.server.log.contains("switched signing to intermediate") }, ca.server.log)
        let (agent, out) = try ca.startAgent(ttl: "1h")
        defer { _ = agent.stop() }
        XCTAssertTrue(eventually(timeout: 10) { FileManager.default.fileExists(atPath: out + "/svid.pem") }, agent.log)

        // The thief's client certificate: a leaf of the admin's SPIFFE ID, sent with the old intermediate.
        let key = try PrivateKey(generating: .p256)
        let minted = try old.sign(publicKeyOf: key, template: CertificateTemplate(
            role: .leaf, serial: try SerialNumber.random(), subject: [("O", "Vouch")], notBefore: Date().addingTimeInterval(-60),
            notAfter: Date().addingTimeInterval(3600), subjectAltNames: SubjectAltNames(uris: ["spiffe://example.org/vouch/admin"])))
        let certPath = ca.root + "/minted.pem", keyPath = ca.root + "/minted_key.pem"
        try (minted.pem + old.certificate.pem).write(toFile: certPath, atomically: true, encoding: .utf8)
        try key.pkcs8PEM().write(toFile: keyPath, atomically: true, encoding: .utf8)
        let thief = VouchClient.Credentials(bundlePEMPath: ca.caDir + "/bundle.pem", certificatePEMPath: certPath, keyPEMPath: keyPath)
        @Sendable func createToken() async throws {
            var request = Vouch_V1_CreateTokenRequest()
            request.spiffeID = "spiffe://example.org/svc/stolen"
            _ = try await VouchClient.with(server: ca.address, credentials: thief) {
                try await Vouch_V1_Admin.Client(wrapping: $0).createToken(request, options: VouchClient.options(timeout: .seconds(3)))
            }
        }
        @Sendable func agentStatus() async throws -> Vouch_V1_AgentStatus {
            try await VouchClient.with(server: HostPort(host: "127.0.0.1", port: agent.port), credentials: thief.expecting("spiffe://example.org/svc/web")) {
                try await Vouch_V1_Agent.Client(wrapping: $0).getStatus(Vouch_V1_GetStatusRequest(), options: VouchClient.options(timeout: .seconds(3)))
            }
        }

        // Before the revocation the intermediate is trusted, and so is what its key signs.
        try await createToken()
        let accepted = try await agentStatus()
        XCTAssertEqual(accepted.callerSpiffeID, "spiffe://example.org/vouch/admin")

        let revoked = try vouch("ca", "intermediate", "revoke", old.certificate.serialHex, "--dir", ca.caDir, "--reason", "keyCompromise")
        XCTAssertEqual(revoked.status, 0, revoked.stderr)
        let refusal = "intermediate \(old.certificate.serialHex) is revoked"

        // The CA: from the generation the server reloads within 2 s, without a restart.
        let revokedAt = Date()
        var refusedByCA = false
        while !refusedByCA && Date().timeIntervalSince(revokedAt) < 4 {
            do { try await createToken() } catch let error as RPCError where error.code == .unavailable { refusedByCA = true } catch {}
            if !refusedByCA { try await Task.sleep(for: .milliseconds(100)) }
        }
        XCTAssertTrue(refusedByCA, ca.server.log)
        XCTAssertTrue(eventually { ca.server.log.contains(refusal) }, ca.server.log)

        // The agent: once it holds the root's CRL that lists the intermediate (its third: init, rotate, revoke).
        let rootCRL = out + "/crl-\(root.serialHex).der"
        XCTAssertTrue(eventually(timeout: 10) {
            (FileManager.default.contents(atPath: rootCRL).flatMap { try? CertificateRevocationList(der: Array($0)) })?.number == 3
        }, agent.log)
        await assertRPCError(.unavailable, "the agent refuses the minted chain at the handshake") { _ = try await agentStatus() }
        XCTAssertTrue(eventually { agent.log.contains(refusal) }, agent.log)
    }
}
