import Foundation
import VouchCrypto
import XCTest

/// What README's server recipes promise, on a server already started from them: clients with other
/// agents' files get through while the server's agent rotates three times, and once one client's
/// certificate is revoked the server refuses it within 10 s (CRL pushed, hook ran, server reloaded)
/// while the other keeps getting through.
extension RelyingPartyWorld {
    struct ScenarioOutcome {
        /// Both clients' requests until the revocation, and those that failed.
        let requests: Int, failed: Int
        let rotations: Int
        let refusedAfter: TimeInterval
        /// Client A's requests after the revocation, and those that failed.
        let laterRequests: Int, laterFailed: Int
        let laterSeconds: TimeInterval
    }

    /// - Parameters:
    ///   - serverAgent: the agent whose files the server reads.
    ///   - revocationEvidence: whether the server's log or the refused request's curl error names the revocation.
    func rotationsThenRevocation(server: RelyingPartyServer, serverAgent: RecipeAgent,
                                 revocationEvidence: (RequestLoop.Outcome) -> Bool) async throws -> ScenarioOutcome? {
        let clientA = try startClient("a"), clientB = try startClient("b")
        let start = Date()
        let loopA = startLoop(for: clientA), loopB = startLoop(for: clientB)
        guard let firstSerial = serverAgent.serial else { throw CLIFailure("server agent wrote no svid.pem") }

        // 20 s certificates are renewed after about 14 s: three rotations take about 45 s.
        let serials = try await waitForRotations(of: serverAgent, count: 3, from: firstSerial, timeout: 90)
        guard serials.count == 4 else {
            XCTFail("\(server.name): the server agent rotated \(serials.count - 1) times in 90 s\n\(diagnostics)")
            return nil
        }
        // The server took the last rotation: it presents the agent's current certificate.
        var served: String?
        XCTAssert(eventually(timeout: 5) { served = servedSerial(as: clientA); return served == serverAgent.serial },
                  "\(server.name) serves \(served ?? "nothing"), the agent holds \(serverAgent.serial ?? "nothing")\n\(diagnostics)")

        let revoked = try await serialSafeToRevoke(clientB)
        let revokedAt = Date()
        let revocation = try vouch("cert", "revoke", revoked, "--reason", "keyCompromise", "--dir", ca.caDir, "--server", ca.server.address)
        XCTAssertEqual(revocation.status, 0, "vouch cert revoke: \(revocation.stdout)\(revocation.stderr)")
        let refusal = loopB.first(from: revokedAt, timeout: revokedAt.addingTimeInterval(10).timeIntervalSinceNow) { !$0.succeeded }
        // Client A keeps getting through for 5 s more.
        try await Task.sleep(for: .seconds(max(0, 5 + (refusal?.at.timeIntervalSinceNow ?? 0))))
        loopA.stop()
        loopB.stop()

        let stoppedAt = Date()
        let beforeRevocation = loopA.requests(to: revokedAt) + loopB.requests(to: revokedAt)
        let failedA = loopA.failures(), failedB = loopB.failures(to: revokedAt)
        XCTAssertEqual(failedA.count + failedB.count, 0, """
            \(server.name): requests that failed before the revocation (A: all, B: before it)
            \(loopA.describe(failedA, since: start))
            \(loopB.describe(failedB, since: start))
            \(diagnostics)
            """)
        guard let refusal else {
            XCTFail("\(server.name) still accepted client B 10 s after its certificate \(revoked) was revoked\n\(diagnostics)")
            return nil
        }
        let accepted = loopB.outcomes.filter { $0.at > refusal.at && $0.succeeded }
        XCTAssertEqual(accepted.count, 0, "\(server.name) accepted client B again after refusing it\n\(diagnostics)")
        XCTAssert(revocationEvidence(refusal), "\(server.name) refused client B, but not for the revocation: \(refusal.detail)\n\(diagnostics)")
        XCTAssertEqual(clientB.serial, revoked, "client B's agent holds the revoked certificate (it cannot renew it)")
        return ScenarioOutcome(requests: beforeRevocation, failed: loopA.failures(to: revokedAt).count + failedB.count, rotations: serials.count - 1,
                               refusedAfter: refusal.at.timeIntervalSince(revokedAt), laterRequests: loopA.requests(from: revokedAt),
                               laterFailed: loopA.failures(from: revokedAt).count, laterSeconds: stoppedAt.timeIntervalSince(revokedAt))
    }

    /// The serial of `client`'s certificate at a moment its agent will not renew it within the next
    /// 3 s, so the revocation lands on the certificate the client keeps using. The agent renews at
    /// 0.66 ± 0.05 of the lifetime after notBefore (its defaults); otherwise wait for the renewal.
    func serialSafeToRevoke(_ client: RecipeAgent) async throws -> String {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let pem = try? String(contentsOfFile: client.out + "/svid.pem", encoding: .utf8),
               let certificate = try? X509Certificate(pem: pem) {
                let lifetime = certificate.notAfter.timeIntervalSince(certificate.notBefore)
                let earliestRenewal = certificate.notBefore.addingTimeInterval(lifetime * (0.66 - 0.05))
                if earliestRenewal.timeIntervalSinceNow > 3 { return certificate.serialHex }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw CLIFailure("agent \(client.name) never held a certificate 3 s away from renewal")
    }

    /// The serial of the certificate the server presents to `client` (openssl s_client with its client.pem).
    func servedSerial(as client: RecipeAgent) -> String? {
        let files = client.out + "/client.pem"
        guard let result = try? openssl(["s_client", "-connect", "127.0.0.1:\(port)", "-cert", files, "-cert_chain", files], stdin: Data()),
              let begin = result.stdout.range(of: "-----BEGIN CERTIFICATE-----"),
              let end = result.stdout.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<result.stdout.endIndex) else { return nil }
        return try? X509Certificate(pem: String(result.stdout[begin.lowerBound..<end.upperBound])).serialHex
    }

    /// The line the test prints for the closing note.
    static func summary(_ name: String, _ outcome: ScenarioOutcome) -> String {
        "\(name): \(outcome.requests) requests, \(outcome.failed) failed, \(outcome.rotations) server rotations, revoked client refused after "
            + String(format: "%.1f s", outcome.refusedAfter) + "; the other client: \(outcome.laterRequests) requests, \(outcome.laterFailed) failed in the "
            + String(format: "%.1f s", outcome.laterSeconds) + " after the revocation"
    }
}
