import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// PostgreSQL stopped for 30 s under two replicas and an agent, then started again: the replicas
/// answer `unavailable` within their bound and say why on /healthz, the agent keeps serving, and
/// afterwards everything resumes without a restart and nothing is lost.
final class DatabaseOutageTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    func testThirtySecondsWithoutPostgreSQLAnswerUnavailableKeepAgentsServingAndLoseNothing() async throws {
        let cluster = "/tmp/vouch-outage-\(getpid())-\(UUID().uuidString.prefix(6))"
        let started = try execute("/bin/bash", [TestPostgres.script, "start", cluster, String(getpid())])
        XCTAssertEqual(started.status, 0, started.stderr)
        defer { _ = try? execute("/bin/bash", [TestPostgres.script, "stop", cluster]) }
        let url = started.lastLine.replacingOccurrences(of: "/postgres", with: "/outage")
        _ = try runPSQL(started.lastLine, "CREATE DATABASE outage")

        let set = try await ReplicaSet(database: url, extraArguments: ["--http", "127.0.0.1:0"])
        // Renewals every ~18 s of a 60 s certificate: some fall in the outage, and it outlives it.
        let (agent, _) = try set.startAgent(Self.web, ttl: "60s", extra: ["--renew-fraction", "0.3", "--max-backoff", "2s"])
        let key = try PrivateKey(generating: .p256)
        let token = try set.createToken(spiffeID: "spiffe://example.org/svc/client", uses: 2)
        let issued = try await set.enroll(0, token: token, key: key)
        let client = try set.fixture.writeIdentity(issued, key: key, name: "client")
        let pids = set.replicas.map(\.process.processIdentifier)
        let agentStatus = {
            try await VouchClient.with(server: HostPort(host: "127.0.0.1", port: agent.port), credentials: client.expecting(Self.web)) {
                try await Vouch_V1_Agent.Client(wrapping: $0).getStatus(Vouch_V1_GetStatusRequest(), options: VouchClient.options(timeout: .seconds(3)))
            }
        }
        XCTAssertEqual(try healthz(set, 0).status, "200")

        XCTAssertEqual(try execute("/bin/bash", [TestPostgres.script, "pause", cluster]).status, 0)
        let outageStart = Date()
        // Each replica answers unavailable, within its bound, for a renewal and an enrollment.
        let renewStart = Date()
        await assertRPCError(.unavailable, "a renewal while the database is down") {
            try await set.renew(0, as: client, newKey: try PrivateKey(generating: .p256))
        }
        let renewTook = Date().timeIntervalSince(renewStart)
        XCTAssertLessThan(renewTook, 6, "answered within the connection wait, before the client's deadline")
        await assertRPCError(.unavailable, "an enrollment while the database is down") {
            try await set.enroll(1, token: token, key: try PrivateKey(generating: .p256))
        }
        for replica in 0..<2 {
            let health = try healthz(set, replica)
            XCTAssertEqual(health.status, "503", "replica \(replica): \(health.body)")
            XCTAssertTrue(health.body.contains("database unavailable"), health.body)
        }
        // The agent keeps serving its certificate to its clients all along.
        var served = 0
        while Date().timeIntervalSince(outageStart) < 30 {
            _ = try await agentStatus()
            served += 1
            try await Task.sleep(for: .milliseconds(500))
        }
        let rotationsDuringOutage = ReplicaTests.rotations(agent)
        XCTAssertEqual(try execute("/bin/bash", [TestPostgres.script, "resume", cluster]).status, 0)

        // Back: the same processes answer again, the agent renews, nothing was lost.
        XCTAssertTrue(eventually(timeout: 15) { (try? self.healthz(set, 0).status) == "200" && (try? self.healthz(set, 1).status) == "200" })
        let renewed = try await set.renew(0, as: client, newKey: try PrivateKey(generating: .p256))
        let enrolled = try await set.enroll(1, token: token, key: try PrivateKey(generating: .p256))
        XCTAssertTrue(eventually(timeout: 20) { ReplicaTests.rotations(agent) > rotationsDuringOutage }, agent.log)
        _ = try await agentStatus()
        XCTAssertEqual(set.replicas.map(\.process.processIdentifier), pids)
        XCTAssertTrue(set.replicas.allSatisfy(\.process.isRunning))
        XCTAssertEqual(try set.missingFromDatabase([issued.serial, renewed.serial, enrolled.serial]), [])
        let failedRenewals = agent.log.split(separator: "\n").filter { $0.contains("renewal failed") && $0.contains("unavailable") }
        XCTAssertGreaterThan(failedRenewals.count, 0, "the agent's renewals in the outage failed and were retried: \(agent.log)")
        let audit = try execute(VouchBinary.path, ["audit", "verify", "--dir", set.caDir, "--database", url])
        XCTAssertEqual(audit.status, 0, audit.stdout + audit.stderr)
        print("outage: renew answered unavailable in \(String(format: "%.2f", renewTook)) s; agent served \(served) calls in 30 s;"
              + " \(failedRenewals.count) renewals retried; rotations \(rotationsDuringOutage) → \(ReplicaTests.rotations(agent))")
    }

    /// GET /healthz on replica `index`: status code and body.
    func healthz(_ set: ReplicaSet, _ index: Int) throws -> (status: String, body: String) {
        guard let address = set.replicas[index].httpAddress else { throw CLIFailure("replica \(index) has no --http listener") }
        let result = try execute("/usr/bin/curl", ["-s", "-m", "10", "-w", "\n%{http_code}", "http://\(address)/healthz"])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n"))
    }
}
