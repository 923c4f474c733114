import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// A real agent with `--ca A,B,...` and real `vouch server` replicas of one CA: when one replica
/// dies the agent renews through the other without a failed renewal, and its revocation stream
/// resumes there after the last sequence it saw; a replica that fails the identity check or
/// closes the connection at its cap is skipped.
final class AgentFailoverProcessTests: XCTestCase {
    /// Two replicas on one PostgreSQL database.
    func testWhenOneReplicaDiesTheAgentRenewsAndFollowsRevocationsThroughTheOther() async throws {
        let replicas = try await ReplicaSet(count: 2)
        let a = replicas.replicas[0], b = replicas.replicas[1]
        let (agent, out) = try replicas.startAgent("spiffe://example.org/svc/web", ttl: "6s",
                                                   extra: ["--renew-fraction", "0.3", "--max-backoff", "1s", "--metrics", "127.0.0.1:0"])
        defer { agent.stop() }

        // Two certificates of a client to revoke, one through each replica.
        let token = try replicas.createToken(spiffeID: "spiffe://example.org/svc/client", uses: 2)
        let first = try await replicas.enroll(0, token: token, key: try PrivateKey(generating: .p256))
        let second = try await replicas.enroll(0, token: token, key: try PrivateKey(generating: .p256))
        try await revoke(first.serial, through: 0, of: replicas)
        XCTAssertTrue(eventually(timeout: 5) { hints(agent, first.serial).count == 1 }, agent.log)
        let field = hints(agent, first.serial).first?.split(separator: " ").first { $0.hasPrefix("sequence=") }
        let sequence = field.map { String($0.dropFirst("sequence=".count)) } ?? "?"

        a.kill()
        let rotationsBefore = rotations(agent)
        XCTAssertTrue(eventually(timeout: 10) { rotations(agent) >= rotationsBefore + 2 }, "renewing through B: \(agent.log)")
        XCTAssertTrue(agent.log.contains("CA replica changed") && agent.log.contains("to=\(b.address)"), agent.log)
        XCTAssertTrue(agent.log.split(separator: "\n").contains {
            $0.contains("revocation stream moves to the next CA replica") && $0.contains("after_sequence=\(sequence)") && $0.contains("to=\(b.address)")
        }, "resumes on B after \(sequence): \(agent.log)")
        XCTAssertFalse(agent.log.contains("renewal failed"), "a dead replica costs a failed connect, not a failed renewal: \(agent.log)")

        // Revoked through B: pushed by B's stream (the CRL refresh is a minute away) into crl.der.
        try await revoke(second.serial, through: 1, of: replicas)
        XCTAssertTrue(eventually(timeout: 5) { crlLists(out, second.serial) }, agent.log)
        XCTAssertTrue(crlLists(out, first.serial))
        XCTAssertEqual(hints(agent, first.serial).count, 1, "B resumed after the sequence A had sent: nothing sent twice")
        XCTAssertEqual(hints(agent, second.serial).count, 1)

        let metricsAddress = announcedAddress(in: agent.log, after: "vouch agent metrics on ") ?? ""
        let metrics = try execute("/usr/bin/curl", ["-sf", "http://\(metricsAddress)/metrics"])
        XCTAssertTrue(metrics.stdout.contains("vouch_agent_ca_replica_active{address=\"\(b.address)\"} 1"), metrics.stdout)
        XCTAssertTrue(metrics.stdout.contains("vouch_agent_ca_replica_active{address=\"\(a.address)\"} 0"), metrics.stdout)
        let status = try await VouchClient.with(server: HostPort(host: "127.0.0.1", port: agent.port),
                                                credentials: replicas.fixture.admin.expecting("spiffe://example.org/svc/web")) {
            try await Vouch_V1_Agent.Client(wrapping: $0).getStatus(Vouch_V1_GetStatusRequest(), options: VouchClient.options(timeout: .seconds(3)))
        }
        XCTAssertEqual(status.caAddress, b.address, "GetStatus names the replica in use")
    }

    private func revoke(_ serial: String, through index: Int, of replicas: ReplicaSet) async throws {
        var request = Vouch_V1_RevokeRequest()
        request.serial = serial
        request.reason = 1
        _ = try await replicas.ca(index, replicas.fixture.admin) { try await $0.revoke(request, options: VouchClient.options()) }
    }

    /// One CA directory (SQLite) behind the right replica.
    func testEnrollmentSkipsAReplicaThatFailsTheIdentityCheckAndOneAtItsConnectionCap() async throws {
        let ca = try CAFixture()
        // Another CA's server at the first address: same trust domain, keys the bundle does not trust.
        let impostor = try CAFixture()
        // A replica of the right CA whose only connection slot a silent client holds. It never
        // answers, so a copy of the CA's keys with a database of its own will do (two servers on
        // one SQLite database refuse to start).
        let cappedDir = ca.root + "/ca-capped"
        try FileManager.default.createDirectory(atPath: cappedDir, withIntermediateDirectories: false)
        for name in try FileManager.default.contentsOfDirectory(atPath: ca.caDir) where !name.hasPrefix("vouch.db") {
            try FileManager.default.copyItem(atPath: ca.caDir + "/" + name, toPath: cappedDir + "/" + name)
        }
        let capped = try ServerProcess(directory: cappedDir, extraArguments: ["--max-connections", "1"])
        defer { capped.stop() }
        let holder = try RawConnection(port: capped.port)
        defer { withExtendedLifetime(holder) {} }
        let out = ca.root + "/agent", tokenFile = ca.root + "/token"
        try ca.createToken(spiffeID: "spiffe://example.org/svc/web").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let agent = try AgentProcess(arguments: [
            "--ca", "\(impostor.server.address),\(capped.address),\(ca.server.address)", "--ca-bundle", ca.caDir + "/bundle.pem",
            "--out", out, "--token-file", tokenFile, "--cert-ttl", "10m",
        ])
        defer { agent.stop() }

        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/svid.pem"), "enrolled through the third address: \(agent.log)")
        let lines = agent.log.split(separator: "\n")
        XCTAssertTrue(lines.contains {
            $0.contains("error") && $0.contains("CA replica failed the server identity check")
                && $0.contains("address=\(impostor.server.address)") && $0.contains("call=enroll")
        }, agent.log)
        XCTAssertTrue(lines.contains {
            $0.contains("CA replica did not answer; trying the next") && $0.contains("address=\(capped.address)")
                && $0.contains("server unavailable")
        }, "the connection cap closes the connection: no answer, so the next replica: \(agent.log)")
        XCTAssertTrue(agent.log.contains("to=\(ca.server.address)"), agent.log)
        XCTAssertFalse(impostor.server.log.contains("Enroll"), "the token never reached the impostor: \(impostor.server.log)")
    }
}

extension AgentFailoverProcessTests {
    /// A first address that accepts TCP and then says nothing (a frozen or fake replica) must not
    /// hold the revocation stream: it moves on after the call timeout and revocations arrive.
    func testARevocationStreamToASilentReplicaMovesOnAfterTheCallTimeout() async throws {
        let ca = try CAFixture()
        // Enrolled through the CA alone; restarted with the silent address first, the stream
        // starts there (the identity on disk needs no call to the CA first).
        var (agent, out) = try ca.startAgent(ttl: "10m")
        agent.stop()
        let silent = try SlowProxy(upstreamPort: ca.server.port)
        silent.holdReplies = true
        agent = try AgentProcess(arguments: ["--ca", "127.0.0.1:\(silent.port),\(ca.server.address)", "--ca-bundle", ca.caDir + "/bundle.pem",
                                             "--out", out, "--cert-ttl", "10m", "--rpc-timeout", "2s"])
        defer { agent.stop() }
        let key = try PrivateKey(generating: .p256)
        let issued = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/client"), key: key)
        _ = try await ca.revoke(issued.serial, as: ca.admin)
        XCTAssertTrue(eventually(timeout: 8) { !hints(agent, issued.serial).isEmpty },
                      "the stream left the silent address and the revocation arrived: \(agent.log)")
        XCTAssertTrue(agent.log.contains("did not open the revocation stream within"), agent.log)
    }
}

/// The agent's log lines for streamed revocations of `serial`.
private func hints(_ agent: AgentProcess, _ serial: String) -> [Substring] {
    agent.log.split(separator: "\n").filter { $0.contains("revocation hint received") && $0.contains(serial) }
}

private func rotations(_ agent: AgentProcess) -> Int {
    agent.log.split(separator: "\n").filter { $0.contains("rotated") && $0.contains("from=") }.count
}

private func crlLists(_ out: String, _ serial: String) -> Bool {
    guard let data = FileManager.default.contents(atPath: out + "/crl.der"),
          let crl = try? CertificateRevocationList(der: Array(data)) else { return false }
    return crl.entries.contains { SerialNumber.hex($0.serial) == serial }
}
