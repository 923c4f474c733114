import Foundation
import VouchAPI
@testable import vouch
import XCTest

/// The command line of the fleet view without a CA: `vouch --version`, `vouch agent --heartbeat`
/// (flag and config key), and `vouch fleet list`'s help and errors. What the list shows for
/// real agents is in FleetProcessTests.
final class FleetCommandTests: XCTestCase {
    func testVersionPrintsTheVersionAgentsReport() throws {
        let result = try vouch("--version")
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, VouchVersion.current + "\n")
        XCTAssertTrue(VouchVersion.current.utf8.count <= 64, "the CA keeps at most 64 bytes of agent_version")
    }

    func testHeartbeatIsAFlagAndAConfigKeyAndZeroTurnsItOff() throws {
        func resolved(_ arguments: [String], file: ConfigFile.AgentSection? = nil) throws -> Duration {
            try AgentCommand.parse(["--ca", "127.0.0.1:8443", "--ca-bundle", "/b.pem", "--out", "/out"] + arguments)
                .resolvedConfiguration(file).0.heartbeat
        }
        XCTAssertEqual(try resolved([]), .seconds(300))
        XCTAssertEqual(try resolved(["--heartbeat", "1m"]), .seconds(60))
        XCTAssertEqual(try resolved(["--heartbeat", "0"]), .zero)
        XCTAssertEqual(try resolved([], file: ConfigFile.AgentSection(heartbeat: "90s")), .seconds(90))
        XCTAssertEqual(try resolved(["--heartbeat", "2m"], file: ConfigFile.AgentSection(heartbeat: "90s")), .seconds(120), "the flag wins")
        XCTAssertThrowsError(try resolved([], file: ConfigFile.AgentSection(heartbeat: "often"))) {
            XCTAssertEqual("\($0)", #"config key agent.heartbeat: "often" is not a duration like 30s, 15m, 24h"#)
        }
    }

    func testTheHelpExplainsEachProblem() throws {
        let result = try vouch("fleet", "list", "--help")
        XCTAssertEqual(result.status, 0, result.stderr)
        for option in ["--stale", "--problems", "--json", "--server", "--dir"] {
            XCTAssertTrue(result.stdout.contains(option), "\(option) in \(result.stdout)")
        }
        let problems = ["serving_expired", "serving_revoked", "serving_superseded", "old_bundle", "silent", "renewal_failing"]
        for problem in problems {
            XCTAssertTrue(result.stdout.contains("\n  \(problem) "), "\(problem) explained in \(result.stdout)")
        }
        XCTAssertTrue(result.stdout.contains("  silent              no report for longer than --stale: the agent is\n"), "not rewrapped: \(result.stdout)")
        // Every problem the API can send has its name.
        XCTAssertEqual([Vouch_V1_AgentProblem.servingExpired, .servingRevoked, .servingSuperseded, .oldBundle, .silent, .renewalFailing]
            .map(\.name), problems)
    }

    func testACAWithoutTheFleetViewIsNamed() async throws {
        let ca = try CAFixture()
        // A CA server without Admin.ListAgents (it serves the CertificateAuthority service only).
        let older = try await FakeCertificateAuthority.start(impersonating: ca)
        defer { older.stop() }
        let result = try vouch("fleet", "list", "--dir", ca.caDir, "--server", older.address)
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.stderr, "vouch: the CA at \(older.address) does not list agents (a version before the fleet view): upgrade it\n")
    }

    func testErrorsAreOneLineAndExitNonZero() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let missing = try vouch("fleet", "list", "--dir", directory + "/none")
        XCTAssertEqual(missing.status, 1)
        XCTAssertEqual(missing.stderr, "vouch: cannot read \(directory)/none/bundle.pem: pass --dir with a CA directory, or --cert/--key/--bundle\n")
        XCTAssertEqual(missing.stdout, "")

        // Files in place, no CA listening.
        for name in ["bundle.pem", "admin.pem", "admin_key.pem"] {
            try "".write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }
        let stale = try vouch("fleet", "list", "--dir", directory, "--stale", "0")
        XCTAssertEqual(stale.status, 1)
        XCTAssertEqual(stale.stderr, "vouch: --stale must be positive\n")
        let unreachable = try vouch("fleet", "list", "--dir", directory, "--server", "127.0.0.1:1", "--timeout", "5s")
        XCTAssertNotEqual(unreachable.status, 0)
        XCTAssertTrue(unreachable.stderr.hasPrefix("vouch: "), unreachable.stderr)
        XCTAssertEqual(unreachable.stderr.filter { $0 == "\n" }.count, 1, "one line: \(unreachable.stderr)")
        XCTAssertEqual(unreachable.stdout, "")
    }
}
