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

/// The audit log's hash chain against hand edits of the SQLite file.
final class AuditChainTests: XCTestCase {
    func sqlite(_ database: String, _ sql: String) throws {
        let result = try execute("/usr/bin/sqlite3", [database, sql])
        XCTAssertEqual(result.status, 0, result.stderr)
    }

    func testVerifyDetectsAnEditedOrDeletedRow() async throws {
        let ca = try CAFixture()
        for name in ["a", "b", "c"] {
            _ = try ca.createToken(spiffeID: "spiffe://example.org/svc/\(name)")
        }
        ca.server.stop()
        let database = ca.caDir + "/vouch.db"
        let intact = try vouch("audit", "verify", "--dir", ca.caDir)
        XCTAssertEqual(intact.status, 0, intact.stderr)
        XCTAssertTrue(intact.stdout.contains("audit log intact: 5 events"), intact.stdout)

        // Edit row 4 by hand: verification names it.
        let copy = ca.root + "/edited.db"
        try FileManager.default.copyItem(atPath: database, toPath: copy)
        try sqlite(database, "UPDATE audit_event SET detail = 'spiffe://example.org/svc/evil' WHERE id = 4")
        let edited = try vouch("audit", "verify", "--dir", ca.caDir)
        XCTAssertEqual(edited.status, 1)
        XCTAssertTrue(edited.stderr.contains("audit log broken at row 4"), edited.stderr)

        // Delete row 3 from the original: the chain breaks at row 4.
        try FileManager.default.removeItem(atPath: database)
        try FileManager.default.copyItem(atPath: copy, toPath: database)
        try sqlite(database, "DELETE FROM audit_event WHERE id = 3")
        let deleted = try vouch("audit", "verify", "--dir", ca.caDir)
        XCTAssertTrue(deleted.stderr.contains("audit log broken at row 4"), deleted.stderr)

        // Delete the last row: the recorded head catches it.
        try FileManager.default.removeItem(atPath: database)
        try FileManager.default.copyItem(atPath: copy, toPath: database)
        try sqlite(database, "DELETE FROM audit_event WHERE id = 5")
        let truncated = try vouch("audit", "verify", "--dir", ca.caDir)
        XCTAssertTrue(truncated.stderr.contains("audit log broken at row 5"), truncated.stderr)
    }
}
