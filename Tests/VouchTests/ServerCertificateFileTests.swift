import Foundation
import VouchCrypto
import XCTest

/// D/server.pem, the servers' fallback listener certificate, follows the signing intermediate:
/// `ca intermediate rotate` and `ca root activate` reissue it, so it verifies against bundle.pem
/// at every stage and its record never keeps the old root in use.
final class ServerCertificateFileTests: XCTestCase {
    func testServerPemFollowsARotationAndARolloverAndStopsCountingUnderTheOldRoot() async throws {
        let ca = try CAFixture()
        let dir = ca.caDir
        let initial = try serverLeaf(dir)

        let rotated = try vouch("ca", "intermediate", "rotate", "--dir", dir)
        XCTAssertEqual(rotated.status, 0, rotated.stderr)
        let intermediate = try XCTUnwrap(rotated.stdout.firstMatch(of: #/rotated the intermediate: ([0-9a-f]+) now signs/#)?.1)
        let afterRotation = try serverLeaf(dir)
        XCTAssertTrue(rotated.stdout.contains("server.pem: reissued \(afterRotation.serialHex) from intermediate \(intermediate) until "),
                      rotated.stdout)
        XCTAssertTrue(rotated.stdout.contains("(replaces \(initial.serialHex))"), rotated.stdout)
        XCTAssertEqual(afterRotation.subjectAltNames.dnsNames, initial.subjectAltNames.dnsNames)
        XCTAssertEqual(afterRotation.subjectAltNames.ipAddresses, initial.subjectAltNames.ipAddresses)
        XCTAssertTrue(afterRotation.isSigned(by: try X509Certificate(pem: String(contentsOfFile: dir + "/issuers/\(intermediate)/certificate.pem",
                                                                                   encoding: .utf8))))
        try assertServerPemVerifies(dir, "after the rotation")

        XCTAssertEqual(try vouch("ca", "root", "prepare", "--dir", dir).status, 0)
        let activated = try vouch("ca", "root", "activate", "--dir", dir, "--force", "--json")
        XCTAssertEqual(activated.status, 0, activated.stderr)
        let reissued = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(activated.stdout.utf8)) as? [String: Any])?["server_cert"]
            as? [String: Any], activated.stdout)
        XCTAssertEqual(reissued["serial"] as? String, try serverLeaf(dir).serialHex)
        try assertServerPemVerifies(dir, "after activate (both roots in the bundle)")

        // The init admin is the one own certificate left under the old root; the status names its command.
        let admin = "spiffe://example.org/vouch/admin"
        XCTAssertTrue(eventually(timeout: 10) { (try? self.ownUnderOldRoot(dir)) == 1 }, "the listener renews from the new intermediate")
        let status = try vouch("ca", "root", "status", "--dir", dir)
        XCTAssertTrue(status.stdout.contains("the CA's own certificates under the old root: 1: \(admin): renew it with vouch ca admin-cert "
            + "--dir \(dir) --spiffe-id \(admin) --out <the directory of its admin.pem>"), status.stdout)
        XCTAssertEqual(try vouch("ca", "admin-cert", "--dir", dir, "--spiffe-id", admin, "--out", dir).status, 0)
        XCTAssertEqual(try ownUnderOldRoot(dir), 0)

        let retired = try vouch("ca", "root", "retire", "--dir", dir)
        XCTAssertEqual(retired.status, 0, retired.stderr)
        XCTAssertFalse(retired.stdout.contains("of the CA itself"), retired.stdout)
        try assertServerPemVerifies(dir, "after retire (the new root alone)")

        // A server serving server.pem as it is (its fallback) is trusted by a client holding the new root alone.
        XCTAssertEqual(ca.server.stop(), 0)
        let fallback = try CAFixture(reusing: ca, server: try ServerProcess(directory: dir, extraArguments: ["--server-cert-ttl", "0"]))
        XCTAssertFalse(try fallback.createToken(spiffeID: "spiffe://example.org/svc/web").isEmpty)
    }

    func testServerCertWritesACopyForReadOnlyReplicasAndRefusesAnUnwritableOut() async throws {
        let ca = try CAFixture()
        let out = ca.root + "/copy"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        let written = try vouch("ca", "server-cert", "--dir", ca.caDir, "--out", out)
        XCTAssertEqual(written.status, 0, written.stderr)
        XCTAssertTrue(written.stdout.hasPrefix("server.pem: reissued \(try serverLeaf(out).serialHex) from intermediate "), written.stdout)
        XCTAssertTrue(written.stdout.hasSuffix(" in \(out)\n"), written.stdout)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: out + "/server_key.pem")[.posixPermissions] as? Int, 0o600)
        let key = try PrivateKey(pem: String(contentsOfFile: out + "/server_key.pem", encoding: .utf8))
        XCTAssertTrue(try serverLeaf(out).matches(key))

        let refused = try vouch("ca", "server-cert", "--dir", ca.caDir, "--out", ca.root + "/nowhere")
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.stderr, "vouch: \(ca.root)/nowhere is not writable: choose a writable --out\n")
    }

    private func serverLeaf(_ dir: String) throws -> X509Certificate {
        try X509Certificate(pem: String(contentsOfFile: dir + "/server.pem", encoding: .utf8))
    }

    private func assertServerPemVerifies(_ dir: String, _ stage: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try openssl(["verify", "-CAfile", dir + "/bundle.pem", "-untrusted", dir + "/server.pem", dir + "/server.pem"])
        XCTAssertEqual(result.status, 0, "\(stage): \(result.stdout)\(result.stderr)", file: file, line: line)
    }

    private func ownUnderOldRoot(_ dir: String) throws -> Int? {
        let status = try vouch("ca", "root", "status", "--dir", dir, "--json")
        let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        return (object?["own_certificates"] as? [String: Any])?["live"] as? Int
    }
}
