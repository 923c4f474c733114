import Foundation
import XCTest

/// `vouch agent --workload-api unix:///PATH` against an unmodified SPIFFE library: py-spiffe 0.3.2
/// (installed by scripts/setup-python.sh) fetches the SVID and bundle, follows a rotation on an
/// open stream and dials another agent over mutual TLS with what it got; raw grpcio and other uids
/// (setpriv, as uid 65534) are refused as configured. Tests/workload/workload_check.py is the client.
final class WorkloadAPIProcessTests: XCTestCase {
    static let python = PythonClientTests.repository + "/.build/python-venv/bin/python"
    static let script = PythonClientTests.repository + "/Tests/workload/workload_check.py"
    static let nobody: uid_t = 65534

    private var directory = ""

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.python) else {
            throw CLIFailure("no Python venv: run scripts/setup-python.sh (scripts/test.sh does)")
        }
        // Short enough for sun_path, and open to uid 65534: who may connect is up to each socket's mode.
        directory = try shortSocketDirectory()
        chmod(directory, 0o755)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    /// Starts an agent serving the Workload API on `directory/NAME.sock` as spiffe://example.org/svc/NAME.
    private func startAgent(_ ca: CAFixture, _ name: String, ttl: String, extra: [String] = []) throws -> (AgentProcess, out: String, socket: String) {
        let out = ca.root + "/" + name, token = ca.root + "/" + name + ".token", socket = directory + "/" + name + ".sock"
        try ca.createToken(spiffeID: "spiffe://example.org/svc/" + name, dns: ["localhost"], ips: ["127.0.0.1"])
            .write(toFile: token, atomically: true, encoding: .utf8)
        let agent = try AgentProcess(arguments: ca.agentArguments(out: out, ttl: ttl)
            + ["--token-file", token, "--workload-api", "unix://" + socket] + extra)
        return (agent, out, socket)
    }

    /// setpriv runs the client as another uid only for root (as the tests run in CI).
    private func requireRoot() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to run the client as uid \(Self.nobody)") }
    }

    /// Runs workload_check.py (as `uid` when given); its JSON lines.
    private func check(_ arguments: [String], as uid: uid_t? = nil) throws -> [[String: Any]] {
        let command = (uid.map { ["/usr/bin/setpriv", "--reuid=\($0)", "--regid=\($0)", "--clear-groups"] } ?? [])
            + [Self.python, Self.script] + arguments
        let result = try execute(command[0], Array(command.dropFirst()))
        print("workload_check.py \(arguments.prefix(1).joined())\(uid.map { " as uid \($0)" } ?? ""):\n\(result.stdout)", terminator: "")
        guard result.status == 0 else { throw CLIFailure("workload_check.py \(arguments) failed: \(result.stderr)") }
        return try result.stdout.split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    /// Serials as the agent logs them and as Python prints them (no leading zeros).
    private func normalized(_ serial: String) -> String {
        String(serial.lowercased().drop { $0 == "0" })
    }

    private func loggedSerials(_ log: String) -> Set<String> {
        Set(log.split(separator: "\n").filter { $0.contains("enrolled") || $0.contains("rotated") }.compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("serial=") }.map { normalized(String($0.dropFirst("serial=".count))) }
        })
    }

    func testSPIFFELibraryFetchesFollowsARotationAndDialsAnotherAgentWithWhatItGot() throws {
        let ca = try CAFixture()
        let (web, webOut, socket) = try startAgent(ca, "web", ttl: "6s", extra: ["--renew-fraction", "0.3"])
        let (peer, _, _) = try startAgent(ca, "peer", ttl: "1h")

        let fetched = try XCTUnwrap(try check(["fetch", socket, webOut]).first)
        XCTAssertEqual(fetched["spiffe_id"] as? String, "spiffe://example.org/svc/web")
        let serial = try XCTUnwrap(fetched["serial"] as? String)
        // svid.pem read just before and just after the fetch: the agent may rotate in between.
        let onDisk = try XCTUnwrap(fetched["svid_pem_serials"] as? [String])
        XCTAssertTrue(onDisk.contains(serial), "fetched \(serial), svid.pem had \(onDisk)")
        XCTAssertEqual(fetched["chain"] as? Int, 2, "leaf and intermediate")
        XCTAssertEqual(fetched["bundles"] as? [String: [String]], ["example.org": try XCTUnwrap(fetched["bundle_pem_serials"] as? [String])])

        // The open stream brings the next certificate without being asked again.
        let stream = try check(["rotation", socket, "15"])
        let seen = try XCTUnwrap(stream.last?["serials"] as? [String])
        XCTAssertEqual(seen.count, 2, "\(stream)")
        XCTAssertEqual(stream.last?["errors"] as? [String], [])
        let logged = loggedSerials(web.log)
        XCTAssertTrue(Set(seen.map(normalized)).isSubset(of: logged), "streamed \(seen), the agent logged \(logged)")

        let dialed = try XCTUnwrap(try check(["mtls", socket, peer.address, "spiffe://example.org/svc/peer"]).first)
        XCTAssertEqual(dialed["server_spiffe_id"] as? String, "spiffe://example.org/svc/peer")
        XCTAssertEqual(dialed["caller_spiffe_id"] as? String, "spiffe://example.org/svc/web", "the other agent saw the fetched SVID")

        // A stream held open does not keep the agent from stopping: SIGTERM ends it.
        let holder = Process(), held = OutputCollector()
        holder.executableURL = URL(fileURLWithPath: Self.python)
        holder.arguments = [Self.script, "hold", socket]
        try holder.runLongLived(output: held)
        XCTAssertTrue(held.wait(timeout: 10) { $0.contains("first") }, held.text)
        XCTAssertEqual(web.stop(), 0, "a graceful exit within 15 s: \(web.log)")
        XCTAssertTrue(held.wait(timeout: 10) { $0.contains("code") }, held.text)
        XCTAssertTrue(held.text.contains(#""code": "UNAVAILABLE", "details": "the agent is shutting down""#), held.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "the socket is removed on shutdown")
    }

    func testRevokingTheAgentEndsOpenStreamsWithPermissionDenied() throws {
        let ca = try CAFixture()
        let (agent, _, socket) = try startAgent(ca, "web", ttl: "1h")
        let revoked = try XCTUnwrap(try check(["revoke", socket, VouchBinary.path, "cert", "revoke", "--dir", ca.caDir,
                                               "--server", ca.server.address, "{serial}"]))
        XCTAssertEqual(revoked.count, 2, "\(revoked)")
        XCTAssertEqual(revoked.first?["code"] as? String, "PERMISSION_DENIED", "the stream ends: \(revoked)")
        let serial = try XCTUnwrap(revoked.first?["serial"] as? String)
        XCTAssertEqual(revoked.first?["details"] as? String, "the agent's certificate \(serial) was revoked")
        XCTAssertEqual(revoked.last?["code"] as? String, "PERMISSION_DENIED", "and new calls are refused: \(revoked)")
        XCTAssertTrue(agent.log.contains("workload API: withdrawing the identity from workloads"), agent.log)
    }

    func testTheSocketModeDecidesWhoConnectsAndASecondAgentOnThePathRefusesToStart() throws {
        try requireRoot()
        let ca = try CAFixture()
        let (privateAgent, _, privateSocket) = try startAgent(ca, "private", ttl: "1h")
        let (openAgent, _, openSocket) = try startAgent(ca, "open", ttl: "1h", extra: ["--workload-api-mode", "0666"])

        var info = stat()
        XCTAssertEqual(lstat(privateSocket, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        XCTAssertEqual(info.st_uid, 0)
        let refused = try XCTUnwrap(try check(["raw", privateSocket], as: Self.nobody).first)
        XCTAssertEqual(refused["code"] as? String, "UNAVAILABLE")
        XCTAssertTrue((refused["details"] as? String ?? "").contains("Permission denied"), "\(refused)")

        let served = try XCTUnwrap(try check(["fetch", openSocket], as: Self.nobody).first)
        XCTAssertEqual(served["spiffe_id"] as? String, "spiffe://example.org/svc/open", "0666: any local user may fetch")

        let second = try vouch(["agent"] + ca.agentArguments(out: ca.root + "/second", ttl: "1h")
            + ["--token-file", ca.root + "/none", "--workload-api", "unix://" + privateSocket], environment: [:])
        XCTAssertEqual(second.status, 1)
        XCTAssertEqual(second.stderr, "vouch: another process is already serving the Workload API on \(privateSocket)\n")
        let still = try XCTUnwrap(try check(["raw", privateSocket]).first)
        XCTAssertEqual(still["code"] as? String, "OK", "the first agent keeps serving")
        XCTAssertEqual(still["spiffe_id"] as? String, "spiffe://example.org/svc/private")
        XCTAssertEqual(privateAgent.stop(), 0)
        XCTAssertEqual(openAgent.stop(), 0)
    }

    func testCallersWithoutTheHeaderOrOutsideTheAllowedUIDsAreRefused() throws {
        try requireRoot()
        let ca = try CAFixture()
        let (agent, _, socket) = try startAgent(ca, "web", ttl: "1h",
                                                extra: ["--workload-api-mode", "0666", "--workload-api-allow-uid", "0"])
        let headerless = try XCTUnwrap(try check(["raw", socket, "noheader"]).first)
        XCTAssertEqual(headerless["code"] as? String, "INVALID_ARGUMENT")
        XCTAssertEqual(headerless["details"] as? String, "security header missing from request")
        let jwt = try XCTUnwrap(try check(["jwt", socket]).first)
        XCTAssertEqual(jwt["code"] as? String, "UNIMPLEMENTED", "no JWT-SVIDs: \(jwt)")

        let outsider = try XCTUnwrap(try check(["raw", socket], as: Self.nobody).first)
        XCTAssertEqual(outsider["code"] as? String, "UNAVAILABLE", "disconnected before any gRPC: \(outsider)")
        XCTAssertTrue(eventually {
            agent.log.contains("workload API: refused a caller whose uid is not in --workload-api-allow-uid")
                && agent.log.contains("uid=65534")
        }, agent.log)
        let line = agent.log.split(separator: "\n").first { $0.contains("refused a caller") } ?? ""
        XCTAssertNotNil(line.range(of: #"pid=[1-9][0-9]*"#, options: .regularExpression), String(line))

        let allowed = try XCTUnwrap(try check(["raw", socket]).first)
        XCTAssertEqual(allowed["code"] as? String, "OK", "uid 0 is allowed: \(allowed)")
    }
}
