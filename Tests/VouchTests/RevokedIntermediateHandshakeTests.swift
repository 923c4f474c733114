import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchCrypto
import XCTest

/// Whoever holds the key of an intermediate its root revoked (keyCompromise) mints a leaf and
/// presents it with that intermediate. The listeners validate the chain the client sends, so the
/// CA's and an agent's must each refuse the revoked intermediate in it, not only a revoked leaf:
/// at the handshake of a new connection, and per call on one opened before the revocation.
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
        let agentAddress = HostPort(host: "127.0.0.1", port: agent.port), toAgent = thief.expecting("spiffe://example.org/svc/web")
        @Sendable func createToken(on connection: GRPCClient<HTTP2ClientTransport.Posix>) async throws {
            var request = Vouch_V1_CreateTokenRequest()
            request.spiffeID = "spiffe://example.org/svc/stolen"
            _ = try await Vouch_V1_Admin.Client(wrapping: connection).createToken(request, options: VouchClient.options(timeout: .seconds(3)))
        }
        @Sendable func agentStatus(on connection: GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Vouch_V1_AgentStatus {
            try await Vouch_V1_Agent.Client(wrapping: connection).getStatus(Vouch_V1_GetStatusRequest(), options: VouchClient.options(timeout: .seconds(3)))
        }
        /// The code and message of a call's refusal; nil when it succeeded.
        func refusal(_ call: () async throws -> Void) async -> (RPCError.Code, String)? {
            do { try await call() } catch let error as RPCError { return (error.code, error.message) } catch { return (.unknown, "\(error)") }
            return nil
        }

        // Connections opened before the revocation and held across it: refused per call, not only at the handshake.
        try await VouchClient.with(server: ca.address, credentials: thief) { toCA in
            try await VouchClient.with(server: agentAddress, credentials: toAgent) { openToAgent in
                // Before the revocation the intermediate is trusted, and so is what its key signs.
                try await createToken(on: toCA)
                let accepted = try await agentStatus(on: openToAgent)
                XCTAssertEqual(accepted.callerSpiffeID, "spiffe://example.org/vouch/admin")

                // admin.pem is under the old intermediate too (init issued it): --force accepts locking it out.
                let revoked = try vouch("ca", "intermediate", "revoke", old.certificate.serialHex, "--dir", ca.caDir, "--reason", "keyCompromise", "--force")
                XCTAssertEqual(revoked.status, 0, revoked.stderr)
                let reason = "intermediate \(old.certificate.serialHex) is revoked"
                let perCall = "client certificate \(minted.serialHex) is refused: \(reason)"

                // The CA: from the generation the server reloads within 2 s, without a restart.
                let revokedAt = Date()
                var refusedByCA = false
                while !refusedByCA && Date().timeIntervalSince(revokedAt) < 4 {
                    refusedByCA = await refusal { try await VouchClient.with(server: ca.address, credentials: thief) { try await createToken(on: $0) } }?.0 == .unavailable
                    if !refusedByCA { try await Task.sleep(for: .milliseconds(100)) }
                }
                XCTAssertTrue(refusedByCA, ca.server.log)
                XCTAssertTrue(eventually { ca.server.log.contains(reason) }, ca.server.log)
                // The open connection asks the same issuer rows on its next call, as a revoked leaf's would be refused.
                let onOpenCA = await refusal { try await createToken(on: toCA) }
                XCTAssertEqual(onOpenCA?.0, .failedPrecondition, ca.server.log)
                XCTAssertEqual(onOpenCA?.1, perCall)

                // The agent: once it holds the root's CRL that lists the intermediate (its third: init, rotate, revoke).
                let rootCRL = out + "/crl-\(root.serialHex).der"
                XCTAssertTrue(eventually(timeout: 10) {
                    (FileManager.default.contents(atPath: rootCRL).flatMap { try? CertificateRevocationList(der: Array($0)) })?.number == 3
                }, agent.log)
                await assertRPCError(.unavailable, "the agent refuses the minted chain at the handshake") {
                    _ = try await VouchClient.with(server: agentAddress, credentials: toAgent) { try await agentStatus(on: $0) }
                }
                XCTAssertTrue(eventually { agent.log.contains(reason) }, agent.log)
                let onOpenAgent = await refusal { _ = try await agentStatus(on: openToAgent) }
                XCTAssertEqual(onOpenAgent?.0, .failedPrecondition, agent.log)
                XCTAssertEqual(onOpenAgent?.1, perCall)
            }
        }
    }
}
