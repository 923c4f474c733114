import Foundation
import VouchAuthority
import VouchCrypto
import XCTest

/// The audit log against someone who can write the database but does not hold the CA's keys:
/// a missing head, a rewritten and rehashed chain, and a rollback to an older copy are caught
/// by `vouch audit verify`, the last two through checkpoints signed with the intermediate key.
final class AuditCheckpointTests: XCTestCase {
    func sqlite(_ database: String, _ sql: String) throws -> String {
        let result = try execute("/usr/bin/sqlite3", ["-separator", "|", database, sql])
        XCTAssertEqual(result.status, 0, result.stderr)
        return result.stdout
    }

    func verify(_ ca: CAFixture, checkpoint: String? = nil) throws -> CommandResult {
        try execute(VouchBinary.path, ["audit", "verify", "--dir", ca.caDir] + (checkpoint.map { ["--checkpoint", $0] } ?? []))
    }

    func testDeletingTheLastRowsAndTheHeadFails() throws {
        let ca = try CAFixture()
        for name in ["a", "b"] { _ = try ca.createToken(spiffeID: "spiffe://example.org/svc/\(name)") }
        ca.server.stop()
        _ = try sqlite(ca.caDir + "/vouch.db", "DELETE FROM audit_event WHERE id > 2; DELETE FROM audit_head;")
        let result = try verify(ca)
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("audit log broken at row 2: the audit_head record is missing"), result.stderr)
    }

    func testAForgedStoredCheckpointFailsAndTheServerWillNotSignOverABrokenTail() throws {
        let ca = try CAFixture()
        ca.server.stop()
        let database = ca.caDir + "/vouch.db"
        // A checkpoint row copied with another signature: verify checks each one against intermediate.pem.
        _ = try sqlite(database, """
            INSERT INTO audit_checkpoint (row_id, hash, time, signer, signature)
            SELECT row_id, hash, time + 1, signer, X'3006020101020101' FROM audit_checkpoint ORDER BY id DESC LIMIT 1
            """)
        let forged = try verify(ca)
        // Rows: ca init's two certificates and root CRL, the listener's own (4).
        XCTAssertTrue(forged.stderr.contains("audit log broken at row 4: the checkpoint signed at") && forged.stderr.contains(
            "its signature does not verify with the intermediate certificate"), forged.stderr)

        // A row appended by hand, its hashes made up: the server refuses to put its signature on it.
        _ = try sqlite(database, """
            DROP TRIGGER audit_checkpoint_no_delete;
            DELETE FROM audit_checkpoint WHERE id = (SELECT max(id) FROM audit_checkpoint);
            INSERT INTO audit_event (time, actor, action, subject, peer, detail, prev_hash, hash)
            VALUES (0, 'local', 'revoke', 'ab', '', '', zeroblob(32), zeroblob(32));
            UPDATE audit_head SET last_id = 5, last_hash = zeroblob(32);
            """)
        let server = try ServerProcess(directory: ca.caDir)
        XCTAssertTrue(eventually { server.log.contains("audit checkpoint failed") }, server.log)
        XCTAssertTrue(server.log.contains("audit log broken at row 5"), server.log)
        server.stop()
    }

    /// Vouch's chain hash, written out from its definition: SHA-256 over the previous hash, the
    /// time's IEEE 754 bits (big-endian), and each text field with a 4-byte big-endian length.
    static func chainHash(previous: [UInt8], timeBits: [UInt8], fields: [[UInt8]]) -> [UInt8] {
        var input = previous + timeBits
        for field in fields {
            let length = UInt32(field.count)
            input += [UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)] + field
        }
        return sha256(input)
    }

    func testRewritingAndRehashingTheChainIsCaughtByTheSignedCheckpoint() throws {
        let ca = try CAFixture()
        for name in ["a", "b", "c"] { _ = try ca.createToken(spiffeID: "spiffe://example.org/svc/\(name)") }
        ca.server.stop()  // signs a last checkpoint of the head at shutdown
        let database = ca.caDir + "/vouch.db"
        XCTAssertEqual(try verify(ca).status, 0)

        // Edit row 5 (after the checkpoint the server signed at start, row 4) and recompute every hash
        // from it on, and the head, with sqlite3 alone.
        let rows = try sqlite(database, """
            SELECT id, hex(ieee754_to_blob(time)), hex(actor), hex(action), hex(subject), hex(peer), hex(detail), hex(hash)
            FROM audit_event ORDER BY id
            """).split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
        XCTAssertEqual(rows.count, 7, "ca init's two certificates and root CRL, the listener's own, and three tokens")
        var previous = [UInt8](repeating: 0, count: 32)
        var updates = ""
        for row in rows {
            var fields = row[2...6].map { [UInt8](hex: $0)! }
            let original = Self.chainHash(previous: previous, timeBits: [UInt8](hex: row[1])!, fields: fields)
            if row[0] == "5" { fields[4] = Array("spiffe://example.org/svc/evil".utf8) }
            let hash = Self.chainHash(previous: previous, timeBits: [UInt8](hex: row[1])!, fields: fields)
            if Int(row[0])! < 5 { XCTAssertEqual(original.hex, row[7].lowercased(), "the hand computation matches Vouch's") }
            if Int(row[0])! >= 5 {
                updates += "UPDATE audit_event SET detail = CAST(X'\(fields[4].hex)' AS TEXT), prev_hash = X'\(previous.hex)', "
                    + "hash = X'\(hash.hex)' WHERE id = \(row[0]);\n"
            }
            previous = hash
        }
        updates += "UPDATE audit_head SET last_hash = X'\(previous.hex)';"
        _ = try sqlite(database, updates)

        let rewritten = try verify(ca)
        XCTAssertEqual(rewritten.status, 1)
        XCTAssertTrue(rewritten.stderr.contains("audit log broken at row 7: its chain hash differs from the checkpoint signed at"),
                      rewritten.stderr)

        // What it cannot see alone: the same rewrite with the checkpoint table emptied too.
        _ = try sqlite(database, "DROP TRIGGER audit_checkpoint_no_delete; DELETE FROM audit_checkpoint;")
        XCTAssertEqual(try verify(ca).status, 0, "without stored or exported checkpoints a rehashed chain is undetectable")
    }

    func testRollbackToAnOlderDatabaseIsCaughtByAnExportedCheckpoint() throws {
        let ca = try CAFixture()
        _ = try ca.createToken(spiffeID: "spiffe://example.org/svc/a")
        ca.server.stop()
        let old = ca.root + "/old"
        try FileManager.default.createDirectory(atPath: old, withIntermediateDirectories: true)
        let dbFiles = ["vouch.db", "vouch.db-wal", "vouch.db-shm"]
        for name in dbFiles where FileManager.default.fileExists(atPath: ca.caDir + "/" + name) {
            try FileManager.default.copyItem(atPath: ca.caDir + "/" + name, toPath: old + "/" + name)
        }

        try ca.startServerOnSamePort()
        _ = try ca.createToken(spiffeID: "spiffe://example.org/svc/b")
        let saved = ca.root + "/checkpoint.json"
        let exported = try vouch("audit", "checkpoint", "--dir", ca.caDir, "--server", ca.server.address, "--out", saved)
        XCTAssertEqual(exported.status, 0, exported.stderr)
        let checkpoint = try AuditCheckpoint(text: try String(contentsOfFile: saved, encoding: .utf8))
        XCTAssertEqual(checkpoint.rowID, 8, "ca init (3), a listener certificate per start (2), token a, token b, and GetAuditCheckpoint itself")
        ca.server.stop()
        XCTAssertEqual(try verify(ca, checkpoint: saved).status, 0)

        // Put the older copy back: alone it verifies (its own checkpoints are older), but not against the saved one.
        for name in dbFiles {
            try? FileManager.default.removeItem(atPath: ca.caDir + "/" + name)
            if FileManager.default.fileExists(atPath: old + "/" + name) {
                try FileManager.default.copyItem(atPath: old + "/" + name, toPath: ca.caDir + "/" + name)
            }
        }
        XCTAssertEqual(try verify(ca).status, 0)
        let rolledBack = try verify(ca, checkpoint: saved)
        XCTAssertEqual(rolledBack.status, 1)
        XCTAssertTrue(rolledBack.stderr.contains("audit log broken at row 8: the checkpoint file records row 8 but the log ends at row 5 "
                                                 + "(rollback to an older database"), rolledBack.stderr)
    }

    func testCheckpointsAreLoggedServedOverHTTPAndSignedByTheIntermediate() throws {
        let ca = try CAFixture()
        ca.server.stop()
        let server = try ServerProcess(directory: ca.caDir, extraArguments: ["--http", "127.0.0.1:0", "--audit-checkpoint-interval", "1s"])
        let fixture = try CAFixture(reusing: ca, server: server)
        XCTAssertTrue(eventually { server.log.contains("vouch server http on ") }, server.log)
        let http = server.httpAddress ?? ""

        // A new event is checkpointed within the interval, logged as one line and served over HTTP.
        _ = try fixture.createToken(spiffeID: "spiffe://example.org/svc/a")
        var served = ""
        XCTAssertTrue(eventually(timeout: 5) {
            served = (try? execute("/usr/bin/curl", ["-sf", "http://\(http)/audit/checkpoint"]).stdout) ?? ""
            // Rows: ca init (2), a listener certificate per start (2), the token.
            return (try? AuditCheckpoint(text: served))?.rowID == 5
        }, served)
        let checkpoint = try AuditCheckpoint(text: served)
        XCTAssertTrue(server.log.split(separator: "\n").contains { $0.contains("audit checkpoint") && $0.contains(checkpoint.text) },
                      server.log)
        let intermediate = try X509Certificate(pem: try String(contentsOfFile: ca.caDir + "/intermediate.pem", encoding: .utf8))
        XCTAssertNil(checkpoint.signatureProblem(certificate: intermediate))
        XCTAssertEqual(checkpoint.signer, intermediate.serialHex)

        let file = ca.root + "/served.json", forged = ca.root + "/forged.json"
        try served.write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try verify(ca, checkpoint: file).status, 0)
        // The same line claiming an earlier row: the signature no longer matches.
        try served.replacingOccurrences(of: "\"row\":5", with: "\"row\":4").write(toFile: forged, atomically: true, encoding: .utf8)
        let refused = try verify(ca, checkpoint: forged)
        XCTAssertTrue(refused.stderr.contains("audit log broken at row 4: the checkpoint file for this row is not valid: "
                                              + "its signature does not verify"), refused.stderr)
    }
}
