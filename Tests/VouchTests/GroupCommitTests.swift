import Foundation
import VouchAuthority
import VouchSQLiteStore
import XCTest

/// Group commit batches concurrent writes into one transaction. These tests check
/// that batching changes nothing a caller can see: a write that fails rolls back
/// alone, the others commit, and the audit chain stays one unbroken line.
final class GroupCommitTests: XCTestCase {
    private func temporaryStore() throws -> (SQLiteAuthorityStore, String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-group-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("vouch.db").path
        return (try SQLiteAuthorityStore(path: path), path)
    }

    private static func certificate(_ index: Int, now: Date) -> CertificateRecord {
        CertificateRecord(serial: String(format: "%032x", index + 1), spiffeID: "spiffe://group.test/svc/\(index)",
                          dnsNames: [], ipAddresses: [], notBefore: now, notAfter: now.addingTimeInterval(3600),
                          issuedAt: now, der: [0x30, 0x00])
    }

    func testConcurrentEnrollmentsWithALimitedTokenCommitExactlyItsUses() async throws {
        let (store, path) = try temporaryStore()
        let now = Date()
        let token = TokenRecord(id: "00000000000000aa", secretHash: [UInt8](repeating: 7, count: 32), spiffeID: "spiffe://group.test/svc",
                                dnsNames: [], ipAddresses: [], createdAt: now, expiresAt: now.addingTimeInterval(600), usesAllowed: 5)
        try await store.insertToken(token, audit: AuditEntry(time: now, actor: "test", action: .tokenCreate, subject: token.id,
                                                             peer: "local", detail: ""))
        // 40 writers at once: they share transactions, and 35 of them must fail inside their batch.
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<40 {
                group.addTask {
                    do {
                        try await store.recordEnrollment(tokenID: token.id, now: now, certificate: Self.certificate(index, now: now), audit: [
                            AuditEntry(time: now, actor: "token:\(token.id)", action: .enroll, subject: "\(index)", peer: "local", detail: ""),
                        ])
                        return true
                    } catch let error as AuthorityError {
                        XCTAssertEqual(error.kind, .unauthenticated)
                        return false
                    } catch {
                        XCTFail("unexpected error \(error)")
                        return false
                    }
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        XCTAssertEqual(outcomes.filter { $0 }.count, 5, "exactly the token's 5 uses succeed")

        let stored = try await store.listCertificates(CertificateQuery(identityGlob: nil, status: nil, expiringWithin: nil,
                                                                       now: now, limit: 100, beforeID: nil))
        XCTAssertEqual(stored.count, 5, "a failed write leaves no certificate behind")
        let consumed = try await store.token(id: token.id)?.usesConsumed
        XCTAssertEqual(consumed, 5)

        let chain = try await store.auditChain()
        XCTAssertEqual(chain.rows.count, 6, "token.create plus one enroll row per success, none for failures")
        guard case .intact = AuditChain.verify(chain.rows, head: chain.head) else {
            return XCTFail("audit chain broken after batched writes")
        }
        // The file itself agrees, read by another process.
        let count = try execute("/usr/bin/sqlite3", ["-cmd", ".timeout 5000", path, "SELECT count(*) FROM certificate"]).stdout
        XCTAssertEqual(count.trimmingCharacters(in: .whitespacesAndNewlines), "5")
    }

    func testEveryWriteIsCommittedBeforeItsCallerResumes() async throws {
        let (store, path) = try temporaryStore()
        let now = Date()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<64 {
                group.addTask {
                    try await store.insertCertificate(Self.certificate(index, now: now), audit: AuditEntry(
                        time: now, actor: "test", action: .issue, subject: "\(index)", peer: "local", detail: ""))
                    // Visible to a separate connection the moment the call returns.
                    let serial = String(format: "%032x", index + 1)
                    let seen = try execute("/usr/bin/sqlite3", ["-cmd", ".timeout 5000", path, "SELECT count(*) FROM certificate WHERE serial = '\(serial)'"])
                    XCTAssertEqual(seen.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "1", "serial \(serial) acknowledged before commit \(seen.stderr)")
                }
            }
            try await group.waitForAll()
        }
    }
}
