import Foundation
import XCTest

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
        // ca init's two certificates and root CRL, the server's own listener certificate, three tokens.
        XCTAssertTrue(intact.stdout.contains("audit log intact: 7 events"), intact.stdout)

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
        try sqlite(database, "DELETE FROM audit_event WHERE id = 7")
        let truncated = try vouch("audit", "verify", "--dir", ca.caDir)
        XCTAssertTrue(truncated.stderr.contains("audit log broken at row 7"), truncated.stderr)
    }
}
