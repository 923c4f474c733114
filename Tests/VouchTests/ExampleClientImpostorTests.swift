import Foundation
import VouchCrypto
import XCTest

/// The example clients against a fake CA: a copy of the CA directory whose `vouch server` presents
/// a certificate the real CA issued to a workload (spiffe://example.org/svc/evil, with IP 127.0.0.1).
/// Its chain and IP verify and it speaks the whole protocol; only its SPIFFE ID is wrong, and each
/// client must refuse it, naming that ID, before the enrollment token reaches it.
final class ExampleClientImpostorTests: XCTestCase {
    func testPythonClientRefusesAWorkloadCertificateOnTheCAAddress() async throws {
        let python = PythonClientTests.repository + "/.build/python-venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            return XCTFail("no Python venv: run scripts/setup-python.sh (scripts/test.sh does)")
        }
        try await checkRefusal(command: [python, PythonClientTests.repository + "/clients/python/vouch_example.py"])
    }

    func testGoClientRefusesAWorkloadCertificateOnTheCAAddress() async throws {
        let client = PythonClientTests.repository + "/.build/go/bin/vouch-example"
        guard FileManager.default.isExecutableFile(atPath: client) else {
            return XCTFail("no Go client: run scripts/setup-go.sh (scripts/test.sh does)")
        }
        try await checkRefusal(command: [client])
    }

    func checkRefusal(command: [String], file: StaticString = #filePath, line: UInt = #line) async throws {
        let ca = try CAFixture()
        let key = try PrivateKey(generating: .p256)
        let evilToken = try ca.createToken(spiffeID: "spiffe://example.org/svc/evil", dns: ["localhost"], ips: ["127.0.0.1"])
        _ = try ca.writeIdentity(try await ca.enroll(token: evilToken, key: key), key: key, name: "evil")
        let tokenFile = ca.root + "/victim-token"
        try ca.createToken(spiffeID: "spiffe://example.org/svc/victim").write(toFile: tokenFile, atomically: true, encoding: .utf8)

        // The fake: the same CA state and keys, serving with the workload's certificate.
        ca.server.stop()
        let fake = ca.root + "/fake"
        try FileManager.default.copyItem(atPath: ca.caDir, toPath: fake)
        for name in ["server.pem", "server_key.pem"] { try FileManager.default.removeItem(atPath: fake + "/" + name) }
        try FileManager.default.copyItem(atPath: ca.root + "/evil.pem", toPath: fake + "/server.pem")
        try FileManager.default.copyItem(atPath: ca.root + "/evil_key.pem", toPath: fake + "/server_key.pem")
        // Serving server.pem as it is, not a listener certificate of its own.
        let impostor = try ServerProcess(directory: fake, extraArguments: ["--server-cert-ttl", "0"])

        // What a client checks without the SPIFFE ID, the chain to the bundle and the IP, passes.
        let plain = try openssl(["s_client", "-connect", impostor.address, "-tls1_3", "-CAfile", ca.caDir + "/bundle.pem",
                                 "-verify_ip", "127.0.0.1", "-verify_return_error"], stdin: Data())
        XCTAssertTrue(plain.stdout.contains("Verify return code: 0 (ok)"), plain.stdout + plain.stderr, file: file, line: line)

        let arguments = Array(command.dropFirst()) + ["--ca", impostor.address, "--bundle", ca.caDir + "/bundle.pem",
                                                      "--token-file", tokenFile, "--out", ca.root + "/victim"]
        let refused = try execute(command[0], arguments)
        XCTAssertEqual(refused.status, 1, refused.stdout, file: file, line: line)
        XCTAssertTrue(refused.stderr.contains("presented SPIFFE ID spiffe://example.org/svc/evil, expected spiffe://<trust domain>/vouch/server"),
                      refused.stderr, file: file, line: line)
        let used = { try execute("/usr/bin/sqlite3", [fake + "/vouch.db", "SELECT count(*) FROM audit_event WHERE action = 'token.use'"]).stdout }
        XCTAssertEqual(try used(), "1\n", "only the evil workload's own enrollment: the victim's token never reached the fake",
                       file: file, line: line)

        // Control: told to expect that ID, the same client hands the fake its token.
        let fooled = try execute(command[0], arguments + ["--server-spiffe-id", "spiffe://example.org/svc/evil"])
        XCTAssertEqual(fooled.status, 0, fooled.stderr, file: file, line: line)
        XCTAssertEqual(try used(), "2\n", file: file, line: line)
    }
}

