import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// CA key handling and the audit trail, as an operator sees them.
final class OperationsTests: XCTestCase {
    func testEncryptedCAKeysNeedThePassphrase() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let passphraseFile = root + "/passphrase"
        try "correct horse battery staple\n".write(toFile: passphraseFile, atomically: true, encoding: .utf8)
        let caDir = root + "/ca"
        let created = try vouch("ca", "init", "--dir", caDir, "--trust-domain", "example.org", "--passphrase-file", passphraseFile)
        XCTAssertEqual(created.status, 0, created.stderr)
        let keyPEM = try String(contentsOfFile: caDir + "/intermediate_key.pem", encoding: .utf8)
        XCTAssertTrue(keyPEM.hasPrefix("-----BEGIN ENCRYPTED PRIVATE KEY-----"))
        XCTAssertThrowsError(try PrivateKey(pem: keyPEM, passphrase: "wrong"))

        let refused = try vouch("server", "--dir", caDir, "--listen", "127.0.0.1:0")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("encrypted"), refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, "one-line reason: \(refused.stderr)")

        let server = try ServerProcess(directory: caDir, extraArguments: ["--passphrase-file", passphraseFile])
        XCTAssertEqual(server.stop(), 0)
    }

    func testEveryIssueRenewRevokeAndTokenUseIsAudited() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: "spiffe://example.org/svc/web")
        let key = try PrivateKey(generating: .p256)
        let issued = try await ca.enroll(token: token, key: key)
        let renewed = try await ca.renew(with: try ca.writeIdentity(issued, key: key, name: "web"), newKey: try PrivateKey(generating: .p256))
        _ = try await ca.revoke(renewed.serial, reason: 5, as: ca.admin)

        let listed = try vouch("audit", "list", "--dir", ca.caDir, "--server", ca.server.address, "--json")
        XCTAssertEqual(listed.status, 0, listed.stderr)
        let events = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]] ?? []
        let actions = events.map { "\($0["action"] as? String ?? "") \($0["subject"] as? String ?? "")" }
        let tokenID = token.split(separator: ".")[1]
        for expected in ["token.create \(tokenID)", "token.use \(tokenID)", "enroll \(issued.serial)",
                         "renew \(renewed.serial)", "revoke \(renewed.serial)"] {
            XCTAssertTrue(actions.contains(expected), "missing \(expected) in \(actions)")
        }
        let revoke = events.first { $0["action"] as? String == "revoke" }
        XCTAssertEqual(revoke?["actor"] as? String, "spiffe://example.org/vouch/admin")
        XCTAssertTrue((revoke?["peer"] as? String ?? "").contains("127.0.0.1"))
        XCTAssertFalse(listed.stdout.contains(token), "the token secret never appears in the audit log")
        XCTAssertFalse(ca.server.log.contains(String(token.split(separator: ".")[2])), "nor in the server log")
    }
}
