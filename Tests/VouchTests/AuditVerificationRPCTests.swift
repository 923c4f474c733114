import Foundation
import GRPCCore
import VouchAPI
import XCTest

/// Admin/VerifyAuditLog, which the dashboard shows next to the audit tail: the server checks its
/// own chain from the latest signed checkpoint to the head, says which row breaks it, and signs
/// nothing while doing so.
final class AuditVerificationRPCTests: XCTestCase {
    func sqlite(_ database: String, _ sql: String) throws -> String {
        let result = try execute("/usr/bin/sqlite3", [database, sql])
        XCTAssertEqual(result.status, 0, result.stderr)
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func verifyAuditLog(_ ca: CAFixture) async throws -> Vouch_V1_AuditLogVerification {
        try await VouchClient.with(server: ca.address, credentials: ca.admin) {
            try await Vouch_V1_Admin.Client(wrapping: $0).verifyAuditLog(Vouch_V1_VerifyAuditLogRequest(), options: VouchClient.options())
        }
    }

    func testAnIntactLogIsReportedWithItsHeadAndCheckpointAndNothingIsSigned() async throws {
        let ca = try CAFixture()
        _ = try ca.createToken(spiffeID: "spiffe://example.org/svc/a")
        let database = ca.caDir + "/vouch.db"
        let checkpointsBefore = try sqlite(database, "SELECT count(*) FROM audit_checkpoint")

        let verification = try await verifyAuditLog(ca)
        XCTAssertTrue(verification.intact, verification.problem)
        XCTAssertEqual(verification.problem, "")
        XCTAssertEqual(verification.brokenRowID, 0)
        XCTAssertEqual(String(verification.headRowID), try sqlite(database, "SELECT max(id) FROM audit_event"),
                       "the head includes the call's own audit row")
        XCTAssertEqual(try sqlite(database, "SELECT action FROM audit_event ORDER BY id DESC LIMIT 1"), "admin.VerifyAuditLog")
        XCTAssertTrue(verification.hasLatestCheckpoint, "the server signs one at start")
        XCTAssertEqual(verification.verifiedFromRowID, verification.latestCheckpoint.rowID)
        XCTAssertLessThan(verification.latestCheckpoint.rowID, verification.headRowID)
        XCTAssertEqual(try sqlite(database, "SELECT count(*) FROM audit_checkpoint"), checkpointsBefore, "verifying signs no checkpoint")
    }

    func testAnEditedRowAfterTheCheckpointIsNamed() async throws {
        let ca = try CAFixture()
        _ = try ca.createToken(spiffeID: "spiffe://example.org/svc/a")
        let database = ca.caDir + "/vouch.db"
        let edited = try sqlite(database, "SELECT id FROM audit_event WHERE action = 'token.create'")
        _ = try sqlite(database, "UPDATE audit_event SET detail = 'spiffe://example.org/svc/other' WHERE id = \(edited)")

        let verification = try await verifyAuditLog(ca)
        XCTAssertFalse(verification.intact)
        XCTAssertEqual(String(verification.brokenRowID), edited)
        XCTAssertEqual(verification.problem,
                       "audit log broken at row \(edited): it does not continue the chain from the last checkpoint (row \(verification.verifiedFromRowID))")
    }

    func testAForgedLatestCheckpointIsTheProblem() async throws {
        let ca = try CAFixture()
        let database = ca.caDir + "/vouch.db"
        _ = try sqlite(database, """
            INSERT INTO audit_checkpoint (row_id, hash, time, signer, signature)
            SELECT row_id, hash, time + 1, signer, X'3006020101020101' FROM audit_checkpoint ORDER BY id DESC LIMIT 1
            """)
        let forgedRow = try sqlite(database, "SELECT row_id FROM audit_checkpoint ORDER BY id DESC LIMIT 1")

        let verification = try await verifyAuditLog(ca)
        XCTAssertFalse(verification.intact)
        XCTAssertEqual(verification.brokenRowID, 0, "no row is at fault: the checkpoint is")
        XCTAssertTrue(verification.problem.hasPrefix("the latest stored checkpoint (row \(forgedRow)) is invalid: "), verification.problem)
    }
}
