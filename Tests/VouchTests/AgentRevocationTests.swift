import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// Revocations reach the agent's listener: pushed within a second, and kept
/// on disk for restarts while the CA is down.
final class AgentRevocationTests: XCTestCase {
    func status(_ agent: AgentProcess, as credentials: VouchClient.Credentials) async throws -> Vouch_V1_AgentStatus {
        try await VouchClient.with(server: HostPort(host: "127.0.0.1", port: agent.port),
                                   credentials: credentials.expecting("spiffe://example.org/svc/web")) {
            try await Vouch_V1_Agent.Client(wrapping: $0).getStatus(Vouch_V1_GetStatusRequest(), options: VouchClient.options(timeout: .seconds(3)))
        }
    }

    func testRevokedClientIsRefusedByTheAgentWithinASecondAndAfterARestartWithoutTheCA() async throws {
        let ca = try CAFixture()
        var (agent, out) = try ca.startAgent(ttl: "10m")
        let arguments = ca.agentArguments(out: out, ttl: "10m")

        // A client service with its own certificate talks to the agent. A second certificate of it,
        // revoked first, shows the agent's revocation stream is connected before the timed revocation.
        let key = try PrivateKey(generating: .p256)
        let token = try ca.createToken(spiffeID: "spiffe://example.org/svc/client", uses: 2)
        let issued = try await ca.enroll(token: token, key: key)
        let probe = try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
        let client = try ca.writeIdentity(issued, key: key, name: "client")
        let before = try await status(agent, as: client)
        XCTAssertEqual(before.callerSpiffeID, "spiffe://example.org/svc/client")
        _ = try await ca.revoke(probe.serial, as: ca.admin)
        XCTAssertTrue(eventually(timeout: 5) {
            agent.log.split(separator: "\n").contains { $0.contains("revocation hint received") && $0.contains(probe.serial) }
        }, agent.log)

        _ = try await ca.revoke(issued.serial, reason: 1, as: ca.admin)
        let revokedAt = Date()
        var refusedAfter: TimeInterval?
        while Date().timeIntervalSince(revokedAt) < 3 {
            do {
                _ = try await status(agent, as: client)
            } catch {
                refusedAfter = Date().timeIntervalSince(revokedAt)
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertNotNil(refusedAfter, "the agent kept accepting a revoked client: \(agent.log)")
        XCTAssertLessThan(refusedAfter ?? 99, 1.0, "refused within one second of Revoke")
        await assertRPCError(.unavailable, "a new connection from the revoked client is refused at the handshake") {
            try await self.status(agent, as: client)
        }
        _ = try await status(agent, as: ca.admin)  // others are still served

        // The CRL lands on disk; restart the agent while the CA is down.
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if let data = FileManager.default.contents(atPath: out + "/crl.der"),
               let crl = try? CertificateRevocationList(der: Array(data)),
               crl.entries.contains(where: { SerialNumber.hex($0.serial) == issued.serial }) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertEqual(agent.stop(), 0)
        ca.server.kill()
        agent = try AgentProcess(arguments: arguments)
        await assertRPCError(.unavailable, "still refused after an agent restart with the CA down (CRL on disk)") {
            try await self.status(agent, as: client)
        }
        let admin = try await status(agent, as: ca.admin)
        XCTAssertEqual(admin.callerSpiffeID, "spiffe://example.org/vouch/admin")
        agent.stop()
    }
}
