import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// The CA's issuers change under a running fleet, as an operator changes them: two replicas on
/// PostgreSQL, two agents with 20-second certificates calling each other every 100 ms (each
/// trusting only its own bundle.pem), an intermediate rotation, then a root rollover in its
/// three stages, each command run as the CLI.
final class RolloverProcessTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web", api = "spiffe://example.org/svc/api"

    func testTwoAgentsCallingEachOtherThroughRotationAndRolloverNeverFail() async throws {
        let set = try await ReplicaSet()
        let fleet = try RolloverFleet(set: set)
        defer { fleet.stop() }
        try await fleet.waitForEnrollment()
        let initial = try fleet.activeIntermediate()

        // Intermediate rotation: both agents' next certificates come from the new intermediate,
        // renewed with their certificates from the old one.
        try fleet.ca("intermediate", "rotate", "--key-in-directory")
        let rotated = try fleet.activeIntermediate()
        XCTAssertNotEqual(rotated.serialHex, initial.serialHex)
        try await fleet.waitUntilBothAgents("hold a certificate of the new intermediate") { try $0.leaf().isSigned(by: rotated) }
        try fleet.assertLeavesVerifyWithOpenSSL(stage: "rotated")

        // Root rollover, stage 1: both agents take the new root (proved by the old one).
        let prepared = try fleet.ca("root", "prepare", "--json", "--key-in-directory")
        let generation = try XCTUnwrap(prepared["generation"] as? Int)
        try await fleet.waitUntilBothAgents("hold both roots") { try $0.bundleRoots().count == 2 }
        let confirmed = try await fleet.waitForStatus(safe: true, stage: "activate")
        let agents = try XCTUnwrap(confirmed["agents"] as? [String: Any])
        let reported = try await fleet.agentsReportingGeneration(atLeast: generation)
        XCTAssertEqual(agents["confirmed"] as? Int, reported, "root status counts what the agents report: \(confirmed)")
        XCTAssertEqual(reported, 2)
        XCTAssertEqual((agents["unconfirmed"] as? [Any])?.count, 0, "\(confirmed)")

        // Stage 2: the new root's intermediate signs; the admin certificate is renewed under it.
        try fleet.ca("root", "activate")
        let newRootIntermediate = try fleet.activeIntermediate()
        try await fleet.waitUntilBothAgents("hold a certificate under the new root") { try $0.leaf().isSigned(by: newRootIntermediate) }
        try fleet.assertLeavesVerifyWithOpenSSL(stage: "activated")
        let admin = try vouch("ca", "admin-cert", "--dir", set.caDir, "--database", set.databaseURL,
                              "--spiffe-id", "spiffe://example.org/vouch/admin", "--out", set.caDir)
        XCTAssertEqual(admin.status, 0, admin.stderr)

        // Stage 3: once status says so, the old root leaves every bundle.
        _ = try await fleet.waitForStatus(safe: true, stage: "retire")
        try fleet.ca("root", "retire")
        try await fleet.waitUntilBothAgents("hold only the new root") { try $0.bundleRoots().map(\.der) == [try fleet.activeRoot().der] }
        // One more rotation of each agent with only the new root trusted anywhere.
        let rotations = fleet.agents.map(\.rotations)
        try await fleet.waitUntilBothAgents("rotate after the retirement") { $0.rotations > rotations[$0.index] }
        try fleet.assertLeavesVerifyWithOpenSSL(stage: "retired")
        XCTAssertEqual(try fleet.bundleOnDisk().count, 1, "D/bundle.pem holds the new root alone")

        let (made, failed) = fleet.calls.counts
        fleet.stop()
        XCTAssertGreaterThan(made, 200)
        XCTAssertEqual(failed, [], "agent-to-agent calls that failed")
        for agent in fleet.agents {
            XCTAssertTrue(agent.process.process.isRunning || agent.exitedCleanly, "agent \(agent.name) was never restarted")
            XCTAssertFalse(agent.process.log.contains("token"), "agent \(agent.name) never asked for a token: \(agent.process.log)")
        }
        XCTAssertEqual(try runPSQL(set.databaseURL, "SELECT sum(uses_consumed) FROM token"), "2", "one token use per agent, at enrollment")
        print("rollover: \(made) agent-to-agent calls, \(failed.count) failed; rotations \(fleet.agents.map(\.rotations))")
    }
}

/// Two agents on a replica set, calling each other with what each holds on disk.
final class RolloverFleet: @unchecked Sendable {
    struct Agent {
        let index: Int
        let name: String
        let process: AgentProcess
        let out: String
        var rotations: Int { ReplicaTests.rotations(process) }
        var exitedCleanly: Bool { !process.process.isRunning && process.process.terminationStatus == 0 }
        func leaf() throws -> X509Certificate { try X509Certificate(pem: String(contentsOfFile: out + "/svid.pem", encoding: .utf8)) }
        func bundleRoots() throws -> [X509Certificate] {
            try X509Certificate.all(inPEM: String(contentsOfFile: out + "/bundle.pem", encoding: .utf8))
        }
    }

    let fixture: CAFixture
    /// The PostgreSQL database the CA runs on; nil: the SQLite database in its directory.
    let databaseURL: String?
    let agents: [Agent]
    let calls = AgentCalls()
    private var callers: Task<Void, Never>?

    convenience init(set: ReplicaSet) throws {
        try self.init(fixture: set.fixture, databaseURL: set.databaseURL) { try set.startAgent($0, ttl: "20s") }
    }

    /// - Parameter startAgent: starts an agent for a SPIFFE ID with 20-second certificates, its
    ///   token in `fixture.root/token-<last path segment>`; by default on the fixture's one server.
    init(fixture: CAFixture, databaseURL: String? = nil,
         startAgent: ((String) throws -> (agent: AgentProcess, out: String))? = nil) throws {
        self.fixture = fixture
        self.databaseURL = databaseURL
        let start = startAgent ?? { id in
            let name = id.split(separator: "/").last.map(String.init) ?? "agent"
            let out = fixture.root + "/agent-" + name, tokenFile = fixture.root + "/token-" + name
            try fixture.createToken(spiffeID: id, dns: ["localhost"], ips: ["127.0.0.1"]).write(toFile: tokenFile, atomically: true, encoding: .utf8)
            return (try AgentProcess(arguments: fixture.agentArguments(out: out, ttl: "20s") + ["--token-file", tokenFile]), out)
        }
        agents = try [RolloverProcessTests.web, RolloverProcessTests.api].enumerated().map { index, id in
            let started = try start(id)
            return Agent(index: index, name: id, process: started.agent, out: started.out)
        }
    }

    func waitForEnrollment() async throws {
        try await waitUntilBothAgents("enroll") { _ in true }
        // The token files go: any later enrollment would have to fail.
        for agent in agents { try? FileManager.default.removeItem(atPath: fixture.root + "/token-" + agent.name.split(separator: "/").last!) }
        let (one, two) = (agents[0], agents[1])
        let calls = self.calls
        callers = Task { await calls.callEachOtherWithOwnBundles(one.out, one.process, one.name, two.out, two.process, two.name) }
    }

    func stop() {
        callers?.cancel()
        callers = nil
    }

    /// `vouch ca ...` on the CA directory and database; the parsed `--json` object, if any.
    @discardableResult
    func ca(_ arguments: String...) throws -> [String: Any] {
        let database = databaseURL.map { ["--database", $0] } ?? []
        let result = try execute(VouchBinary.path, ["ca"] + arguments + ["--dir", fixture.caDir] + database)
        guard result.status == 0 else { throw CLIFailure("vouch ca \(arguments.joined(separator: " ")) failed: \(result.stderr)\(result.stdout)") }
        return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    func activeIntermediate() throws -> X509Certificate { try issuer("intermediate") }
    func activeRoot() throws -> X509Certificate { try issuer("root") }

    private func issuer(_ kind: String) throws -> X509Certificate {
        let query = "FROM issuer WHERE kind = '\(kind)' AND state = 'active'"
        guard let databaseURL else {
            let hex = try execute("/usr/bin/sqlite3", [fixture.caDir + "/vouch.db", "SELECT hex(der) " + query])
            return try X509Certificate(der: Array(hexBytes(hex.stdout.trimmingCharacters(in: .whitespacesAndNewlines))))
        }
        let hex = try runPSQL(databaseURL, "SELECT encode(der, 'hex') " + query)
        return try X509Certificate(der: Array(hexBytes(hex)))
    }

    func bundleOnDisk() throws -> [X509Certificate] {
        try X509Certificate.all(inPEM: String(contentsOfFile: fixture.caDir + "/bundle.pem", encoding: .utf8))
    }

    /// Waits (up to two certificate lifetimes) until `condition` holds for both agents.
    func waitUntilBothAgents(_ what: String, _ condition: (Agent) throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(45)
        while Date() < deadline {
            if agents.allSatisfy({ (try? condition($0)) ?? false }) { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw CLIFailure("the agents did not \(what) within 45 s:\n\(agents.map(\.process.log).joined(separator: "\n---\n"))")
    }

    /// Polls `vouch ca root status --json` until its next stage is `stage` and `safe` matches.
    func waitForStatus(safe: Bool, stage: String) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(45)
        var last: [String: Any] = [:]
        while Date() < deadline {
            last = try ca("root", "status", "--json")
            if let next = last["next"] as? [String: Any], next["safe"] as? Bool == safe,
               (next["command"] as? String)?.contains(stage) == true { return last }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw CLIFailure("root status never said \(stage) is safe: \(last)")
    }

    /// How many agents report, in GetStatus, a trust bundle of generation `generation` or later.
    func agentsReportingGeneration(atLeast generation: Int) async throws -> Int {
        var count = 0
        for (caller, callee) in [(agents[1], agents[0]), (agents[0], agents[1])] {
            let credentials = try AgentCalls.snapshot(of: caller.out, bundle: nil)
            let status = try await VouchClient.with(server: HostPort(host: "127.0.0.1", port: callee.process.port),
                                                    credentials: credentials.expecting(callee.name)) {
                try await Vouch_V1_Agent.Client(wrapping: $0).getStatus(Vouch_V1_GetStatusRequest(), options: VouchClient.options(timeout: .seconds(3)))
            }
            if status.trustGeneration >= generation { count += 1 }
        }
        return count
    }

    /// `openssl verify` of each agent's leaf with its chain.pem against the CA directory's bundle.pem.
    func assertLeavesVerifyWithOpenSSL(stage: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for agent in agents {
            let copy = try AgentCalls.snapshot(of: agent.out, bundle: nil)
            let result = try openssl(["verify", "-CAfile", fixture.caDir + "/bundle.pem", "-untrusted", copy.certificatePEMPath!,
                                      copy.certificatePEMPath!])
            XCTAssertEqual(result.status, 0, "\(stage): openssl verify of \(agent.name)'s leaf: \(result.stdout)\(result.stderr)",
                           file: file, line: line)
        }
    }
}

private func hexBytes(_ hex: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
        bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
        index = next
    }
    return bytes
}
