import Foundation
import Testing
@testable import VouchAuthority
@testable import VouchPostgresStore

/// Enrollments on PostgreSQL share transactions (EnrollmentBatcher) and append to the audit chain
/// with hashes PostgreSQL computes (AuditAppend): what callers see must not change.
@Suite("PostgreSQL enrollment batches")
struct PostgresEnrollmentBatchTests {
    typealias Contract = AuthorityStoreContractTests

    static func store() async throws -> PostgresAuthorityStore {
        let database = try await TestPostgres.shared.freshDatabase()
        return try await PostgresAuthorityStore.connect(host: database.host, port: database.port, user: database.user,
                                                        password: nil, database: database.database, tls: .disable)
    }

    /// Fields of every length class and outside ASCII, so the hash's UTF-8 lengths and bytes are exercised.
    static func entries(_ index: Int) -> [AuditEntry] {
        [AuditEntry(time: Contract.now.addingTimeInterval(Double(index) / 3), actor: "token:dddd000000000001", action: .tokenUse,
                    subject: "dddd000000000001", peer: "ipv6:[::1]:\(index)", detail: "spiffe://example.org/café/☃/\(index)"),
         AuditEntry(time: Contract.now, actor: "token:dddd000000000001", action: .enroll, subject: String(format: "%02x", index),
                    peer: "", detail: String(repeating: "é", count: index * 40))]
    }

    @Test func concurrentEnrollmentsTakeExactlyTheTokensUsesAndChainAsAuditChainHashes() async throws {
        let store = try await Self.store()
        try await store.insertToken(Contract.token("dddd000000000001", uses: 5), audit: Contract.entry(.tokenCreate))
        let refusals = await withTaskGroup(of: AuthorityError?.self) { group in
            for index in 0..<40 {
                group.addTask {
                    do {
                        try await store.recordEnrollment(tokenID: "dddd000000000001", now: Contract.now,
                                                         certificate: Contract.certificate(String(format: "%02x", index)),
                                                         audit: Self.entries(index))
                        return nil
                    } catch {
                        return error as? AuthorityError ?? AuthorityError(.internal, "\(error)")
                    }
                }
            }
            return await group.reduce(into: [AuthorityError]()) { if let refusal = $1 { $0.append(refusal) } }
        }
        #expect(refusals.count == 35)
        #expect(refusals.allSatisfy { $0.kind == .unauthenticated && $0.message.contains("already used") }, "\(refusals)")
        #expect(try await store.countCertificates(CertificateQuery(now: Contract.now, limit: 0)) == 5)
        #expect(try await store.token(id: "dddd000000000001")?.usesConsumed == 5)
        // Each row's hash is AuditChain.hash of its fields and the row before; the head is the last row.
        let (rows, head) = try await store.auditChain()
        #expect(rows.count == 1 + 5 * 2, "token.create and two rows per enrollment, none for refusals")
        guard case .intact = AuditChain.verify(rows, head: head) else {
            Issue.record("the chain does not verify: \(AuditChain.verify(rows, head: head))")
            return
        }
        let enrolled = Set(rows.filter { $0.entry.action == "enroll" }.map(\.entry.subject))
        let written = try await store.listCertificates(CertificateQuery(now: Contract.now, limit: 10)).map(\.serial)
        #expect(Set(written) == enrolled, "a certificate for each enroll row")
        await store.close()
    }

    @Test func aStatementRefusedInABatchFailsOnlyItsOwnEnrollment() async throws {
        let store = try await Self.store()
        try await store.insertToken(Contract.token("dddd000000000001", uses: 20), audit: Contract.entry(.tokenCreate))
        // Twenty at once, two of them with one serial: PostgreSQL refuses the second insert.
        let failures = await withTaskGroup(of: (any Error)?.self) { group in
            for index in 0..<20 {
                group.addTask {
                    do {
                        try await store.recordEnrollment(tokenID: "dddd000000000001", now: Contract.now,
                                                         certificate: Contract.certificate(String(format: "%02x", min(index, 18))),
                                                         audit: Self.entries(index))
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            return await group.reduce(into: [any Error]()) { if let failure = $1 { $0.append(failure) } }
        }
        #expect(failures.count == 1, "\(failures)")
        #expect(failures.first is PostgresStoreError, "the store's error, as for a single write: \(failures)")
        #expect(try await store.countCertificates(CertificateQuery(now: Contract.now, limit: 0)) == 19)
        #expect(try await store.token(id: "dddd000000000001")?.usesConsumed == 19)
        #expect(try await Contract.verified(store))
        await store.close()
    }
}
