import Foundation
@testable import VouchAgent
import VouchAPI
import VouchCrypto
import XCTest

/// The fleet view end to end: a real `vouch server` and three real `vouch agent` processes
/// reporting every second. One is killed (SIGKILL) and goes silent, one has its certificate
/// revoked with `vouch cert revoke`, one stays healthy; `vouch fleet list` shows exactly that,
/// in JSON, as a table, and with `--problems`. Report timing, throttling and failures are in
/// FleetReporterTests; the CA's judging in the CA's own tests.
final class FleetProcessTests: XCTestCase {
    /// An identical report within 10 s of the last one stored is not written again (the CA's own
    /// throttle), so a healthy agent's last report can be up to about 11 s old: the threshold is
    /// above that, and the killed agent waits it out.
    let stale = "13s"

    func testKilledAgentsAreSilentRevokedOnesServingRevokedAndHealthyOnesHaveNoProblem() throws {
        let ca = try CAFixture()
        // The agent to be killed starts first, so its silence overlaps the other agents' start.
        let killed = try startAgent(ca, name: "killed")
        try waitForAgents(ca, ["killed"])
        kill(killed.process.pid, SIGKILL)
        killed.process.process.waitUntilExit()
        let healthy = try startAgent(ca, name: "healthy"), revoked = try startAgent(ca, name: "revoked")
        defer {
            healthy.process.stop()
            revoked.process.stop()
        }
        try waitForAgents(ca, ["healthy", "killed", "revoked"])
        let revocation = try vouch("cert", "revoke", revoked.serial, "--dir", ca.caDir, "--server", ca.server.address)
        XCTAssertEqual(revocation.status, 0, revocation.stderr)

        // Listed until the killed agent's last report is older than the threshold.
        var agents: [[String: Any]] = []
        XCTAssertTrue(eventually(timeout: 30) {
            agents = (try? list(ca, ["--stale", stale, "--json"])) ?? []
            return agents.contains { $0["spiffe_id"] as? String == Self.id("killed") && problems($0) == ["silent"] } || pause()
        }, "\(agents)")
        let byName = Dictionary(uniqueKeysWithValues: agents.map { (($0["spiffe_id"] as? String) ?? "", $0) })
        XCTAssertEqual(byName.count, 3, "\(agents)")
        let (healthyRow, killedRow, revokedRow) = (byName[Self.id("healthy")] ?? [:], byName[Self.id("killed")] ?? [:], byName[Self.id("revoked")] ?? [:])
        XCTAssertEqual(problems(healthyRow), [], "\(healthyRow)")
        XCTAssertEqual(problems(killedRow), ["silent"], "\(killedRow)")
        XCTAssertTrue(problems(revokedRow).contains("serving_revoked"), "\(revokedRow)")
        XCTAssertEqual(agents.last?["spiffe_id"] as? String, Self.id("healthy"), "problems first")
        for (row, agent) in [(healthyRow, healthy), (killedRow, killed), (revokedRow, revoked)] {
            XCTAssertEqual(row["serving_serial"] as? String, agent.serial, "the certificate each agent serves")
            XCTAssertEqual(row["lineage"] as? String, agent.serial, "no rotation yet: the lineage is the enrollment certificate")
            XCTAssertEqual(row["agent_version"] as? String, VouchVersion.current)
            XCTAssertEqual(row["host_name"] as? String, FleetReporter.localHostName())
            XCTAssertEqual((row["root_serials"] as? [String])?.count, 1, "\(row)")
        }

        // --problems: exactly the two.
        let withProblems = try list(ca, ["--stale", stale, "--json", "--problems"])
        XCTAssertEqual(Set(withProblems.compactMap { $0["spiffe_id"] as? String }), [Self.id("killed"), Self.id("revoked")])

        // The revoked agent's reports are refused at the handshake now: it says so a few times, and keeps running.
        let refused = revoked.process.log.split(separator: "\n").filter { $0.contains("notice") && $0.contains("could not report to the CA") }
        XCTAssertTrue((1...3).contains(refused.count), revoked.process.log)
        XCTAssertTrue(revoked.process.process.isRunning)

        // The table names the problems.
        let table = try vouch("fleet", "list", "--dir", ca.caDir, "--server", ca.server.address, "--stale", stale)
        XCTAssertEqual(table.status, 0, table.stderr)
        let lines = table.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first?.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " "),
                       "SPIFFE ID HOST SERVING NOT AFTER LAST REPORT VERSION PROBLEMS")
        XCTAssertEqual(lines.count, 4, table.stdout)
        func row(_ name: String) -> String { lines.first { $0.hasPrefix(Self.id(name) + " ") } ?? "" }
        XCTAssertTrue(row("killed").hasSuffix(" silent"), table.stdout)
        XCTAssertTrue(row("revoked").contains(" serving_revoked"), table.stdout)
        XCTAssertTrue(row("healthy").hasSuffix(" -"), table.stdout)
        XCTAssertTrue(row("healthy").contains(" \(healthy.serial) ") && row("healthy").contains(" \(VouchVersion.current) "), table.stdout)
        XCTAssertNotNil(row("healthy").range(of: #" \d+s ago "#, options: .regularExpression), table.stdout)
    }

    func testARotationIsListedWithTheNewSerialUnderTheSameLineage() throws {
        let ca = try CAFixture()
        // Renewed about 2 s after enrollment; heartbeats off: the rotation alone is reported.
        let agent = try startAgent(ca, name: "rotating", ttl: "8s", extra: ["--renew-fraction", "0.25", "--heartbeat", "0"])
        defer { agent.process.stop() }
        var row: [String: Any] = [:]
        var served = ""
        XCTAssertTrue(eventually(timeout: 15) {
            served = (try? X509Certificate(pem: String(contentsOfFile: ca.root + "/rotating/svid.pem", encoding: .utf8)).serialHex) ?? ""
            row = (try? list(ca, ["--json"]))?.first ?? [:]
            return (served != agent.serial && row["serving_serial"] as? String == served) || pause()
        }, "\(row)")
        XCTAssertEqual(row["lineage"] as? String, agent.serial, "the agent keeps its name across renewals")
        XCTAssertEqual(row["reported_by_serial"] as? String, served)
        XCTAssertGreaterThanOrEqual(row["rotations"] as? Int ?? 0, 1)
        XCTAssertNotNil(row["last_rotation"] as? String)
        XCTAssertEqual(row["problems"] as? [String], [])
    }

    func testAnAgentWhoseRenewalFailsIsListedAsFailingUntilItRecovers() throws {
        let ca = try CAFixture()
        let out = ca.root + "/stuck"
        // Renewed about 2 s after enrollment, retried every second.
        let agent = try startAgent(ca, name: "stuck", ttl: "8s", extra: ["--renew-fraction", "0.25", "--max-backoff", "1s", "--heartbeat", "0"])
        defer { agent.process.stop() }
        // A directory where chain.pem was: the agent cannot read its identity to renew it.
        let chain = try String(contentsOfFile: out + "/chain.pem", encoding: .utf8)
        try FileManager.default.removeItem(atPath: out + "/chain.pem")
        try FileManager.default.createDirectory(atPath: out + "/chain.pem", withIntermediateDirectories: false)
        var row: [String: Any] = [:]
        XCTAssertTrue(eventually(timeout: 15) {
            row = (try? list(ca, ["--json"]))?.first ?? [:]
            return problems(row) == ["renewal_failing"] || pause()
        }, "\(row) \(agent.process.log)")
        // (Usually the enrollment certificate; one renewed before the fault was in place would do as well.)
        let stuck = try X509Certificate(pem: String(contentsOfFile: out + "/svid.pem", encoding: .utf8)).serialHex
        XCTAssertEqual(row["serving_serial"] as? String, stuck, "still serving the certificate it cannot renew")
        XCTAssertEqual(row["last_error"] as? String, "cannot read \(out)/chain.pem", "\(row)")
        XCTAssertGreaterThanOrEqual(row["failures"] as? Int ?? 0, 1)
        XCTAssertNotNil(row["last_error_at"] as? String)

        // Put right: the next attempt renews, the new certificate is served, and the problem goes.
        try FileManager.default.removeItem(atPath: out + "/chain.pem")
        try chain.write(toFile: out + "/chain.pem", atomically: true, encoding: .utf8)
        XCTAssertTrue(eventually(timeout: 15) {
            row = (try? list(ca, ["--json"]))?.first ?? [:]
            return (row["serving_serial"] as? String != stuck && problems(row) == []) || pause()
        }, "\(row)")
        XCTAssertNil(row["last_error"], "\(row)")
    }

    static func id(_ name: String) -> String { "spiffe://example.org/fleet/\(name)" }

    private struct RunningAgent {
        let process: AgentProcess
        let serial: String
    }

    /// An agent enrolled as /fleet/NAME in its own directory, reporting every second.
    private func startAgent(_ ca: CAFixture, name: String, ttl: String = "1h", extra: [String] = ["--heartbeat", "1s"]) throws -> RunningAgent {
        let out = ca.root + "/" + name, tokenFile = ca.root + "/\(name).token"
        try ca.createToken(spiffeID: Self.id(name), dns: ["localhost"], ips: ["127.0.0.1"]).write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let process = try AgentProcess(arguments: ca.agentArguments(out: out, ttl: ttl) + ["--token-file", tokenFile] + extra)
        let serial = try X509Certificate(pem: String(contentsOfFile: out + "/svid.pem", encoding: .utf8)).serialHex
        return RunningAgent(process: process, serial: serial)
    }

    /// Waits until the CA lists these agents (by name), each with a report.
    private func waitForAgents(_ ca: CAFixture, _ names: [String]) throws {
        var agents: [[String: Any]] = []
        XCTAssertTrue(eventually(timeout: 15) {
            agents = (try? list(ca, ["--json"])) ?? []
            return Set(agents.compactMap { $0["spiffe_id"] as? String }) == Set(names.map(Self.id)) || pause()
        }, "\(agents)")
    }

    private func list(_ ca: CAFixture, _ arguments: [String]) throws -> [[String: Any]] {
        let result = try execute(VouchBinary.path, ["fleet", "list", "--dir", ca.caDir, "--server", ca.server.address] + arguments)
        guard result.status == 0 else { throw CLIFailure("fleet list failed: \(result.stderr)") }
        return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]] ?? []
    }

    /// Between two listings (each one a process): false, to poll again.
    private func pause() -> Bool {
        Thread.sleep(forTimeInterval: 0.25)
        return false
    }

    private func problems(_ row: [String: Any]) -> [String] { row["problems"] as? [String] ?? [] }
}
