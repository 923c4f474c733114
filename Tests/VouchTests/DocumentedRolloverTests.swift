import Foundation
import VouchCrypto
import XCTest

/// docs/operations.md's procedures for rotating the intermediate and rolling the root over, run as
/// written by an operator's shell against a CA with a running fleet: if any step left an agent
/// needing a new token, or a workload unable to reach another, this fails.
final class DocumentedRolloverTests: XCTestCase {
    func testTheDocumentedRotationAndRolloverNeedNoNewToken() async throws {
        let ca = try CAFixture()
        let fleet = try RolloverFleet(fixture: ca)
        defer { fleet.stop() }
        // Enrolled; the token files are deleted, so any later enrollment would have to fail.
        try await fleet.waitForEnrollment()
        let processes = fleet.agents.map(\.process.pid)
        let text = try OperationsGuide.text()

        for section in [OperationsGuide.rotateIntermediate, OperationsGuide.rotateRoot] {
            // The only change to the operator's text: the status gates poll every second, not every ten.
            let script = try OperationsGuide.script(section, caDirectory: ca.caDir, text: text)
                .replacingOccurrences(of: "; do sleep 10; done", with: "; do sleep 1; done")
            let started = Date()
            let ran = try await offTheCooperativePool { try sh(script) }
            XCTAssertEqual(ran.status, 0, "\(section) as written: \(ran.stdout)\(ran.stderr)")
            print("documented rollover: \(section) took \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        }
        try await fleet.waitUntilBothAgents("hold only the new root") { try $0.bundleRoots().map(\.der) == [try fleet.activeRoot().der] }
        // One more renewal of each agent once the old root is gone everywhere.
        let rotations = fleet.agents.map(\.rotations)
        try await fleet.waitUntilBothAgents("rotate after the retirement") { $0.rotations > rotations[$0.index] }

        let (made, failed) = fleet.calls.counts
        fleet.stop()
        XCTAssertGreaterThan(made, 200)
        XCTAssertEqual(failed, [], "agent-to-agent calls that failed")
        let newRoot = try fleet.activeRoot()
        for (agent, pid) in zip(fleet.agents, processes) {
            XCTAssertTrue(agent.process.process.isRunning, "agent \(agent.name) still runs: \(agent.process.log)")
            XCTAssertEqual(agent.process.pid, pid, "agent \(agent.name) is the process that enrolled")
            let asked = agent.process.log.split(separator: "\n").filter { $0.localizedCaseInsensitiveContains("token") }
            XCTAssertEqual(asked, [], "agent \(agent.name) never asked for a token")
            let verified = try agent.verifyLeafAgainstOwnBundle()
            XCTAssertEqual(verified.status, 0, "openssl verify of \(agent.name)'s leaf against its bundle.pem: \(verified.stdout)\(verified.stderr)")
            XCTAssertEqual(try agent.bundleRoots().map(\.der), [newRoot.der], "\(agent.name)'s bundle.pem holds the new root alone")
        }
        let uses = try execute("/usr/bin/sqlite3", [ca.caDir + "/vouch.db", "SELECT uses_consumed FROM token ORDER BY id"])
        XCTAssertEqual(uses.stdout, "1\n1\n", "one token use per agent, at enrollment")
        print("documented rollover: \(made) agent-to-agent calls, \(failed.count) failed; rotations \(fleet.agents.map(\.rotations))")
    }
}

extension RolloverFleet.Agent {
    /// `openssl verify -CAfile bundle.pem -untrusted chain.pem svid.pem` on a copy of the agent's
    /// files taken while svid.pem stayed the same (a rotation in between would mix two chains).
    func verifyLeafAgainstOwnBundle() throws -> CommandResult {
        let names = ["svid.pem", "chain.pem", "bundle.pem"]
        for _ in 0..<20 {
            let contents = try names.map { try String(contentsOfFile: out + "/" + $0, encoding: .utf8) }
            guard try String(contentsOfFile: out + "/svid.pem", encoding: .utf8) == contents[0] else { continue }
            let copy = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: copy) }
            for (name, content) in zip(names, contents) { try content.write(toFile: copy + "/" + name, atomically: true, encoding: .utf8) }
            return try openssl(["verify", "-CAfile", copy + "/bundle.pem", "-untrusted", copy + "/chain.pem", copy + "/svid.pem"])
        }
        throw CLIFailure("\(out)/svid.pem kept changing")
    }
}

/// Runs blocking work (a child process waited for) on its own thread, so the calls between the
/// agents keep the cooperative pool meanwhile.
func offTheCooperativePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}
