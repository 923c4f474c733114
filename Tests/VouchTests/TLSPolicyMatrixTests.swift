import Foundation
import VouchCrypto
import XCTest

/// Which TLS clients the CA listener and the agent listener accept, checked
/// with `openssl s_client` (TLS version × client certificate × trust).
final class TLSPolicyMatrixTests: XCTestCase {
    enum Outcome: String { case accepted, refused }

    /// Connects, sends nothing, and reads until the server closes or a second passes;
    /// a server that refuses after the TLS 1.3 handshake shows up as an alert on read.
    func handshake(_ address: String, version: String, cert: String?, key: String?, trust: String) throws -> Outcome {
        var arguments = ["s_client", "-connect", address, version, "-alpn", "h2", "-CAfile", trust, "-verify_return_error"]
        if let cert, let key { arguments += ["-cert", cert, "-key", key] }
        // TLS 1.3 clients finish their side of the handshake before the server checks their
        // certificate, so keep the connection open a moment to read the server's verdict.
        let command = "sleep 1 | /usr/bin/openssl " + arguments.map { "'\($0)'" }.joined(separator: " ")
        let result = try execute("/bin/sh", ["-c", command])
        let output = result.stdout + result.stderr
        let refused = result.status != 0 || output.contains("alert") || !output.contains("Verify return code: 0 (ok)")
        return refused ? .refused : .accepted
    }

    func testTheListenersAcceptOnlyWhatTheirPolicyAllows() throws {
        let ca = try CAFixture()
        let (agent, _) = try ca.startAgent(ttl: "10m")
        defer { agent.stop() }
        let other = ca.root + "/other"
        XCTAssertEqual(try vouch("ca", "init", "--dir", other, "--trust-domain", "example.org").status, 0)
        let bundle = ca.caDir + "/bundle.pem"
        let admin: (String, String)? = (ca.caDir + "/admin.pem", ca.caDir + "/admin_key.pem")
        let foreign: (String, String)? = (other + "/admin.pem", other + "/admin_key.pem")
        let none: (String, String)? = nil

        // (listener, TLS version, client certificate, client trust) -> expected
        let matrix: [(String, String, String, (String, String)?, String, Outcome)] = [
            ("CA", ca.server.address, "-tls1_3", none, bundle, .accepted),          // Enroll needs no client cert
            ("CA", ca.server.address, "-tls1_3", admin, bundle, .accepted),
            ("CA", ca.server.address, "-tls1_2", none, bundle, .refused),
            ("CA", ca.server.address, "-tls1_2", admin, bundle, .refused),
            ("CA", ca.server.address, "-tls1_3", none, other + "/bundle.pem", .refused),  // client does not trust the CA
            ("agent", agent.address, "-tls1_3", admin, bundle, .accepted),
            ("agent", agent.address, "-tls1_3", none, bundle, .refused),            // the agent requires a client cert
            ("agent", agent.address, "-tls1_3", foreign, bundle, .refused),        // from another CA
            ("agent", agent.address, "-tls1_2", admin, bundle, .refused),
        ]
        for (listener, address, version, identity, trust, expected) in matrix {
            let outcome = try handshake(address, version: version, cert: identity?.0, key: identity?.1, trust: trust)
            XCTAssertEqual(outcome, expected, "\(listener) \(version) cert=\(identity?.0 ?? "none") trust=\(trust)")
        }
    }

    func testAFloodOfHalfOpenConnectionsDoesNotStopService() async throws {
        let ca = try CAFixture()
        // 200 TCP connections that never start TLS.
        var sockets: [Int32] = []
        defer { sockets.forEach { close($0) } }
        for _ in 0..<200 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(ca.server.port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            XCTAssertEqual(connected, 0)
            sockets.append(fd)
        }
        let started = Date()
        let issued = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/web"),
                                         key: try PrivateKey(generating: .p256))
        XCTAssertFalse(issued.serial.isEmpty)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "served others while 200 connections hang")
    }
}
