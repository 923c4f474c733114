import Foundation
import VouchCrypto
import XCTest

/// Which TLS clients the CA listener and the agent listener accept, checked
/// with `openssl s_client` (TLS version × client certificate × trust).
final class TLSPolicyMatrixTests: XCTestCase {
    enum Outcome: String { case accepted, refused }

    /// The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC client sends first.
    static let http2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 0x04, 0, 0, 0, 0, 0]
    /// The server's acknowledgement of that SETTINGS frame.
    static let settingsAck = String(decoding: [0, 0, 0, 0x04, 0x01, 0, 0, 0, 0] as [UInt8], as: UTF8.self)

    /// Connects with `openssl s_client`, sends the HTTP/2 preface and waits for the server's verdict.
    /// TLS 1.3 clients finish their side of the handshake before the server checks their certificate,
    /// so the verdict comes after it: a refusal as an alert (s_client then exits), an acceptance as
    /// the server's answer to the preface (its SETTINGS acknowledgement), which it can only send once
    /// it has verified the client's certificate and Finished. Accepted means that answer came.
    static func handshake(_ address: String, version: String, cert: String?, key: String?, trust: String,
                          patience: TimeInterval = 10) throws -> Outcome {
        var arguments = ["s_client", "-connect", address, version, "-alpn", "h2", "-CAfile", trust, "-verify_return_error"]
        if let cert, let key { arguments += ["-cert", cert, "-key", key] }
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        client.arguments = arguments
        // Output to a file rather than a pipe: nine clients start at once, and a pipe's end can
        // leak into a sibling started meanwhile and hold off its end of file.
        let transcript = FileManager.default.temporaryDirectory.appendingPathComponent("s_client-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: transcript.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: transcript) }
        let output = try FileHandle(forWritingTo: transcript)
        let input = Pipe()
        client.standardInput = input
        client.standardOutput = output
        client.standardError = output
        func text() -> String { (try? String(contentsOf: transcript, encoding: .isoLatin1)) ?? "" }
        input.fileHandleForWriting.write(Data(http2Preface))  // sent once the handshake is done
        try client.run()
        try output.close()
        _ = eventually(timeout: patience) { !client.isRunning || text().contains(settingsAck) }
        try input.fileHandleForWriting.close()  // end of input: s_client closes the connection and exits
        if !eventually(timeout: 5, { !client.isRunning }) { client.terminate() }
        client.waitUntilExit()
        let text = text()
        let accepted = text.contains(settingsAck) && text.contains("Verify return code: 0 (ok)") && !text.contains("alert")
        return accepted ? .accepted : .refused
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
        // All cells at once: each waits for its own verdict.
        let outcomes = Outcomes(count: matrix.count)
        let done = DispatchGroup()
        for (index, (_, address, version, identity, trust, _)) in matrix.enumerated() {
            done.enter()
            // A thread each: every cell mostly waits, and a pool as wide as the cores would queue them.
            Thread {
                outcomes.set(index, Result { try Self.handshake(address, version: version, cert: identity?.0, key: identity?.1, trust: trust) })
                done.leave()
            }.start()
        }
        done.wait()
        for (index, (listener, _, version, identity, trust, expected)) in matrix.enumerated() {
            XCTAssertEqual(try outcomes.get(index), expected, "\(listener) \(version) cert=\(identity?.0 ?? "none") trust=\(trust)")
        }
    }

    func testAFloodOfHalfOpenConnectionsDoesNotStopService() async throws {
        let ca = try CAFixture()
        let pid = ca.server.process.processIdentifier
        let descriptorsBefore = openDescriptors(pid)
        // 200 TCP connections that never start TLS, in batches the accept queue can hold (a full
        // queue drops the SYN and the client only retries a second later).
        var flood: [RawConnection] = []
        for _ in 0..<4 {
            for _ in 0..<50 { flood.append(try RawConnection(port: ca.server.port)) }
            XCTAssertTrue(eventually { openDescriptors(pid) >= descriptorsBefore + flood.count },
                          "the server holds \(flood.count): \(openDescriptors(pid)) descriptors, \(descriptorsBefore) before")
        }
        let started = Date()
        let issued = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/web"),
                                         key: try PrivateKey(generating: .p256))
        XCTAssertFalse(issued.serial.isEmpty)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "served others while 200 connections hang")
        XCTAssertEqual(RawConnection.stillOpen(flood), 200, "all 200 still hang")
    }
}

/// Results filled in by concurrent workers.
private final class Outcomes: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<TLSPolicyMatrixTests.Outcome, any Error>?]

    init(count: Int) { results = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ result: Result<TLSPolicyMatrixTests.Outcome, any Error>) { lock.withLock { results[index] = result } }

    func get(_ index: Int) throws -> TLSPolicyMatrixTests.Outcome? { try lock.withLock { results[index] }?.get() }
}
