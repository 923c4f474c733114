import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// A workload whose certificate chains to the bundle and carries the CA's host name and IP
/// must still not pass for the CA: every Vouch client checks the server's SPIFFE ID.
final class ServerIdentityTests: XCTestCase {
    static let evil = "spiffe://example.org/svc/evil"

    /// `openssl s_server` with a workload certificate for 127.0.0.1, printing whatever it receives.
    final class Impostor {
        let process = Process()
        let output = OutputCollector()
        let port: Int

        init(ca: CAFixture) async throws {
            let key = try PrivateKey(generating: .p256)
            let issued = try await ca.enroll(token: try ca.createToken(spiffeID: ServerIdentityTests.evil, dns: ["localhost"], ips: ["127.0.0.1"]),
                                             key: key)
            _ = try ca.writeIdentity(issued, key: key, name: "evil")
            port = try freeLoopbackPort()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            process.arguments = ["s_server", "-accept", "127.0.0.1:\(port)", "-tls1_3", "-alpn", "h2",
                                 "-cert", ca.root + "/evil.pem", "-key", ca.root + "/evil_key.pem",
                                 "-cert_chain", ca.caDir + "/intermediate.pem"]
            process.standardInput = Pipe()
            // The test's own reference can outlive the test case (XCTest keeps it): killed at exit.
            try process.runLongLived(output: output)
            guard eventually(timeout: 10, { output.text.contains("ACCEPT") }) else { throw CLIFailure("s_server did not start: \(output.text)") }
        }

        var address: String { "127.0.0.1:\(port)" }

        /// SIGKILL: a child spawned from one of the test's threads inherits its blocked signals,
        /// SIGTERM among them, so `terminate()` would leave it running after the suite.
        func stop() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }

        deinit { stop() }
    }

    func testCLIRefusesAWorkloadPosingAsTheCA() async throws {
        let ca = try CAFixture()
        let impostor = try await Impostor(ca: ca)
        defer { impostor.stop() }
        let listed = try vouch("cert", "list", "--dir", ca.caDir, "--server", impostor.address)
        XCTAssertNotEqual(listed.status, 0)
        XCTAssertTrue(listed.stderr.contains("presented \(Self.evil), not spiffe://example.org/vouch/server"), listed.stderr)

        let revoked = try vouch("cert", "revoke", "0123456789abcdef", "--dir", ca.caDir, "--server", impostor.address)
        XCTAssertNotEqual(revoked.status, 0, "a revocation the impostor would swallow is not reported as done")
        XCTAssertFalse(revoked.stdout.contains("revoked"), revoked.stdout)

        // The same check passes the real server, and a configured ID is honoured.
        XCTAssertEqual(try vouch("cert", "list", "--dir", ca.caDir, "--server", ca.server.address).status, 0)
        let wrongID = try vouch("cert", "list", "--dir", ca.caDir, "--server", ca.server.address,
                                "--server-spiffe-id", "spiffe://example.org/ca/elsewhere")
        XCTAssertNotEqual(wrongID.status, 0)
        XCTAssertTrue(wrongID.stderr.contains("presented spiffe://example.org/vouch/server, not spiffe://example.org/ca/elsewhere"),
                      wrongID.stderr)
    }

    func testAgentNeverHandsItsTokenToAWorkloadPosingAsTheCA() async throws {
        let ca = try CAFixture()
        let impostor = try await Impostor(ca: ca)
        defer { impostor.stop() }
        let token = try ca.createToken(spiffeID: "spiffe://example.org/svc/victim")
        let tokenFile = ca.root + "/victim.token"
        try token.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let agent = try execute(VouchBinary.path, ["agent", "--ca", impostor.address, "--ca-bundle", ca.caDir + "/bundle.pem",
                                                   "--token-file", tokenFile, "--out", ca.root + "/victim", "--rpc-timeout", "3s"])
        XCTAssertNotEqual(agent.status, 0)
        XCTAssertTrue(agent.stderr.contains("presented \(Self.evil)"), agent.stderr)
        let secret = String(token.split(separator: ".").last ?? "")
        XCTAssertFalse(impostor.output.text.contains(secret), "the token never reached the impostor")

        // A configured CA identity is honoured: the real server is refused under another expected ID ...
        let strict = try execute(VouchBinary.path, ["agent", "--ca", ca.server.address, "--ca-bundle", ca.caDir + "/bundle.pem",
                                                    "--token-file", tokenFile, "--out", ca.root + "/strict", "--rpc-timeout", "3s",
                                                    "--ca-spiffe-id", "spiffe://example.org/ca/elsewhere"])
        XCTAssertNotEqual(strict.status, 0)
        XCTAssertTrue(strict.stderr.contains("presented spiffe://example.org/vouch/server, not spiffe://example.org/ca/elsewhere"),
                      strict.stderr)

        // ... and the token is still unused: it enrolls at the real CA.
        _ = try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw CLIFailure("no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
