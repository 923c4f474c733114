import Foundation
import Testing
import VouchAuthority
@testable import VouchSQLiteStore

/// Agents' reports in the store contract, on every store: one row per lineage (the enrollment
/// serial at the root of `renewed_from`), found again after renewals whether or not each was
/// reported, first_seen kept, and the served certificate's record joined in for judging.
extension AuthorityStoreContractTests {
    static func agentReport(_ serving: String, _ change: (inout AgentReportRecord) -> Void = { _ in }) -> AgentReportRecord {
        var report = AgentReportRecord(servingSerial: serving, servingNotAfter: 1_800_003_600, trustGeneration: 3,
                                       bundleSHA256: Array(0..<32), rootSerials: ["0a", "0b"], lastRotation: 1_799_999_000,
                                       lastError: "renew: the CA is unavailable (é)", lastErrorAt: 1_799_999_500, rotations: 2,
                                       failures: 1, agentVersion: "vouch 1.0", hostName: "web-1.internal")
        change(&report)
        return report
    }

    /// Issues `serial` as a renewal of `previous` at `now + offset`.
    static func renewal(_ serial: String, of previous: String, after offset: TimeInterval, in store: any AuthorityStore) async throws {
        var certificate = Self.certificate(serial, renewedFrom: previous)
        certificate.issuedAt = now.addingTimeInterval(offset)
        _ = try await store.recordRenewal(certificate: certificate, previousSerial: previous, replacing: nil,
                                          at: certificate.issuedAt, budget: nil, audit: [Self.entry(.renew)])
    }

    @Test(arguments: StoreKind.allCases)
    func anAgentKeepsItsRowAcrossThreeRotationsWithAMissedReport(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertCertificate(Self.certificate("e1"), audit: Self.entry(.enroll))
        try await store.recordAgentReport(Self.agentReport("e1"), callerSerial: "e1", spiffeID: "spiffe://example.org/svc/web",
                                          peer: "ipv4:10.0.0.1:1", at: Self.now)
        try await Self.renewal("e2", of: "e1", after: 100, in: store)
        try await store.recordAgentReport(Self.agentReport("e2") { $0.rotations = 3 }, callerSerial: "e2",
                                          spiffeID: "spiffe://example.org/svc/web", peer: "ipv4:10.0.0.1:2", at: Self.now.addingTimeInterval(100))
        // e3 is never reported (the agent was down): e4's report walks the chain up to e1.
        try await Self.renewal("e3", of: "e2", after: 200, in: store)
        try await Self.renewal("e4", of: "e3", after: 300, in: store)
        let last = Self.agentReport("e4") { $0.rotations = 5; $0.rootSerials = []; $0.bundleSHA256 = []; $0.lastError = "" }
        try await store.recordAgentReport(last, callerSerial: "e4", spiffeID: "spiffe://example.org/svc/web", peer: "ipv4:10.0.0.1:4",
                                          at: Self.now.addingTimeInterval(300))

        let rows = try await store.agentReports()
        #expect(rows.count == 1)
        let row = try #require(rows.first)
        #expect(row.lineage == "e1")
        #expect(row.callerSerial == "e4")
        #expect(row.report == last, "every field as reported, empty lists included")
        #expect(row.firstSeen == Self.now, "first_seen kept from the first report")
        #expect(row.reportedAt == Self.now.addingTimeInterval(300))
        #expect(row.peer == "ipv4:10.0.0.1:4")
        #expect(row.served == ServedCertificate(notAfter: Self.now.addingTimeInterval(3600)))

        // A heartbeat from e4 again, and a late report from e3: still the same row.
        try await store.recordAgentReport(last, callerSerial: "e4", spiffeID: "spiffe://example.org/svc/web", peer: "p", at: Self.now.addingTimeInterval(400))
        try await store.recordAgentReport(Self.agentReport("e3"), callerSerial: "e3", spiffeID: "spiffe://example.org/svc/web", peer: "p",
                                          at: Self.now.addingTimeInterval(500))
        #expect(try await store.agentReports().map { [$0.lineage, $0.callerSerial] } == [["e1", "e3"]])
    }

    @Test(arguments: StoreKind.allCases)
    func eachEnrollmentIsItsOwnAgentAndAnUnknownCallerStoresNothing(kind: StoreKind) async throws {
        let store = try await kind.make()
        // Two hosts enrolled with one multi-use token: same SPIFFE ID, two lineages.
        try await store.insertCertificate(Self.certificate("a1"), audit: Self.entry(.enroll))
        try await store.insertCertificate(Self.certificate("b1"), audit: Self.entry(.enroll))
        try await Self.renewal("b2", of: "b1", after: 10, in: store)
        for serial in ["a1", "b2"] {
            try await store.recordAgentReport(Self.agentReport(serial), callerSerial: serial, spiffeID: "spiffe://example.org/svc/web",
                                              peer: "p", at: Self.now)
        }
        await #expect(throws: AuthorityError(.notFound, "no certificate ff")) {
            try await store.recordAgentReport(Self.agentReport("ff"), callerSerial: "ff", spiffeID: "spiffe://example.org/svc/web",
                                              peer: "p", at: Self.now)
        }
        #expect(try await store.agentReports().map { [$0.lineage, $0.callerSerial] } == [["a1", "a1"], ["b1", "b2"]])
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentFirstReportsOfALineageMakeOneRow(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertCertificate(Self.certificate("f1"), audit: Self.entry(.enroll))
        try await Self.renewal("f2", of: "f1", after: 10, in: store)
        try await Self.renewal("f3", of: "f2", after: 20, in: store)
        // Replicas taking the first reports of one agent at once (f3 walks the chain, f1 is the lineage itself).
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<8 {
                let caller = index % 2 == 0 ? "f3" : "f1"
                group.addTask {
                    try await store.recordAgentReport(Self.agentReport(caller) { $0.rotations = Int64(index) }, callerSerial: caller,
                                                      spiffeID: "spiffe://example.org/svc/web", peer: "p", at: Self.now.addingTimeInterval(Double(index)))
                }
            }
            try await group.waitForAll()
        }
        let rows = try await store.agentReports()
        #expect(rows.map(\.lineage) == ["f1"])
        #expect(rows.first.map { Set(["f1", "f3"]).contains($0.callerSerial) } == true)
    }

    @Test(arguments: StoreKind.allCases)
    func theServedCertificatesRecordIsJoinedIn(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertCertificate(Self.certificate("c1"), audit: Self.entry(.enroll))
        try await Self.renewal("c2", of: "c1", after: 90, in: store)
        // Still serving c1 after the renewal: its successor and when that was issued.
        try await store.recordAgentReport(Self.agentReport("c1"), callerSerial: "c2", spiffeID: "spiffe://example.org/svc/web", peer: "p", at: Self.now)
        #expect(try await store.agentReports().first?.served
                == ServedCertificate(notAfter: Self.now.addingTimeInterval(3600), supersededBy: "c2", successorIssuedAt: Self.now.addingTimeInterval(90)))
        _ = try await store.revoke(serial: "c1", reason: 1, at: Self.now.addingTimeInterval(120), withRenewals: false, budget: nil) { serial, _ in
            Self.entry(.revoke, subject: serial)
        }
        #expect(try await store.agentReports().first?.served?.revokedAt == Self.now.addingTimeInterval(120))
        // A served serial the store does not know: nothing to join.
        try await store.recordAgentReport(Self.agentReport("dd"), callerSerial: "c2", spiffeID: "spiffe://example.org/svc/web", peer: "p", at: Self.now)
        #expect(try await store.agentReports().first.map { $0.served == nil && $0.report.servingSerial == "dd" } == true)
    }
}

/// A database made before the fleet view gains its table in place when opened.
@Suite("Agent report schema upgrade")
struct AgentReportSchemaUpgradeTests {
    @Test func aSQLiteDatabaseFromBeforeTheFleetViewTakesReportsOnceOpened() async throws {
        let path = try temporaryDirectory() + "/vouch.db"
        try SQLiteAuthorityStore.createDatabase(at: path, migratedUpTo: "v6-root-crl")
        let store = try SQLiteAuthorityStore(path: path)
        try await store.insertCertificate(AuthorityStoreContractTests.certificate("a1"), audit: AuthorityStoreContractTests.entry(.enroll))
        try await store.recordAgentReport(AuthorityStoreContractTests.agentReport("a1"), callerSerial: "a1",
                                          spiffeID: "spiffe://example.org/svc/web", peer: "p", at: AuthorityStoreContractTests.now)
        #expect(try await store.agentReports().map(\.lineage) == ["a1"])
    }
}
