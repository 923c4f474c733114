import Foundation
import Testing
import VouchAuthority
import VouchPostgresStore
import VouchSQLiteStore

/// What every `AuthorityStore` must do, run against each implementation: SQLite (a real file),
/// PostgreSQL (a new database in the test cluster) and the in-memory store.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgres, memory

    var testDescription: String { rawValue }

    func make() async throws -> any AuthorityStore {
        switch self {
        case .sqlite:
            return try SQLiteAuthorityStore(path: try temporaryDirectory() + "/vouch.db")
        case .postgres:
            // Closed when the test releases it.
            let database = try await TestPostgres.shared.freshDatabase()
            return try await PostgresAuthorityStore.connect(host: database.host, port: database.port, user: database.user,
                                                            password: nil, database: database.database, tls: .disable)
        case .memory:
            return InMemoryAuthorityStore()
        }
    }
}

@Suite("AuthorityStore contract")
struct AuthorityStoreContractTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func entry(_ action: AuditAction, actor: String = "local", subject: String = "", at time: Date = now) -> AuditEntry {
        AuditEntry(time: time, actor: actor, action: action, subject: subject, peer: "test", detail: "")
    }

    static func token(_ id: String, uses: Int = 1, expiresIn: TimeInterval = 900) -> TokenRecord {
        TokenRecord(id: id, secretHash: Array(repeating: 7, count: 32), spiffeID: "spiffe://example.org/svc/\(id)", dnsNames: ["a.example.org"],
                    ipAddresses: ["10.0.0.1"], createdAt: now, expiresAt: now.addingTimeInterval(expiresIn), usesAllowed: uses)
    }

    static func certificate(_ serial: String, id: String = "spiffe://example.org/svc/web", renewedFrom: String? = nil,
                            notAfter: TimeInterval = 3600) -> CertificateRecord {
        CertificateRecord(serial: serial, spiffeID: id, dnsNames: ["web.internal"], ipAddresses: [], notBefore: now,
                          notAfter: now.addingTimeInterval(notAfter), issuedAt: now, der: [0x30, 0x00], renewedFrom: renewedFrom)
    }

    static func verified(_ store: any AuthorityStore) async throws -> Bool {
        let (rows, head) = try await store.auditChain()
        if case .intact = AuditChain.verify(rows, head: head) { return true }
        return false
    }

    @Test(arguments: StoreKind.allCases)
    func tokensAreStoredListedAndRevoked(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertToken(Self.token("aaaa000000000001"), audit: Self.entry(.tokenCreate))
        var later = Self.token("aaaa000000000002")
        later.createdAt = Self.now.addingTimeInterval(10)
        try await store.insertToken(later, audit: Self.entry(.tokenCreate))
        #expect(try await store.token(id: "aaaa000000000001") == Self.token("aaaa000000000001"))
        #expect(try await store.token(id: "ffff000000000000") == nil)
        #expect(try await store.listTokens().map(\.id) == ["aaaa000000000002", "aaaa000000000001"], "newest first")
        #expect(try await store.revokeToken(id: "aaaa000000000001", audit: Self.entry(.tokenRevoke)))
        #expect(try await store.revokeToken(id: "ffff000000000000", audit: Self.entry(.tokenRevoke)) == false)
        #expect(try await store.token(id: "aaaa000000000001")?.revoked == true)
        #expect(try await store.auditEvents(afterID: 0, limit: 10).map(\.entry.action) == ["token.create", "token.create", "token.revoke"],
                "an unknown token's revocation is not audited")
    }

    @Test(arguments: StoreKind.allCases)
    func anEnrollmentConsumesAUseOrStoresNothing(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertToken(Self.token("bbbb000000000001", uses: 1), audit: Self.entry(.tokenCreate))
        try await store.recordEnrollment(tokenID: "bbbb000000000001", now: Self.now, certificate: Self.certificate("01"),
                                         audit: [Self.entry(.tokenUse), Self.entry(.enroll)])
        #expect(try await store.token(id: "bbbb000000000001")?.usesConsumed == 1)
        await #expect(throws: (any Error).self, "a used-up token") {
            try await store.recordEnrollment(tokenID: "bbbb000000000001", now: Self.now, certificate: Self.certificate("02"), audit: [Self.entry(.enroll)])
        }
        try await store.insertToken(Self.token("bbbb000000000002", expiresIn: 60), audit: Self.entry(.tokenCreate))
        await #expect(throws: (any Error).self, "an expired token") {
            try await store.recordEnrollment(tokenID: "bbbb000000000002", now: Self.now.addingTimeInterval(61),
                                             certificate: Self.certificate("03"), audit: [Self.entry(.enroll)])
        }
        #expect(try await store.certificate(serial: "02") == nil)
        #expect(try await store.certificate(serial: "03") == nil)
        #expect(try await store.auditEvents(afterID: 0, limit: 10).count == 4, "refusals leave no audit row")
        #expect(try await Self.verified(store))
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentUsesOfASingleUseTokenLetExactlyOneThrough(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertToken(Self.token("cccc000000000001"), audit: Self.entry(.tokenCreate))
        let successes = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<8 {
                group.addTask {
                    (try? await store.recordEnrollment(tokenID: "cccc000000000001", now: Self.now,
                                                       certificate: Self.certificate(String(format: "%02x", index + 16)),
                                                       audit: [Self.entry(.enroll)])) != nil
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(successes == 1)
        #expect(try await store.countCertificates(CertificateQuery(now: Self.now, limit: 0)) == 1)
    }

    @Test(arguments: StoreKind.allCases)
    func aCertificateRenewsOnceUnlessItsSuccessorIsReplaced(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertCertificate(Self.certificate("a1"), audit: Self.entry(.issue))
        #expect(try await store.recordRenewal(certificate: Self.certificate("b1", renewedFrom: "a1"), previousSerial: "a1", replacing: nil,
                                              at: Self.now, budget: nil, audit: [Self.entry(.renew)]) == nil)
        #expect(try await store.certificate(serial: "a1")?.supersededBy == "b1")
        await #expect(throws: (any Error).self, "a second renewal from a1 that does not know of b1") {
            _ = try await store.recordRenewal(certificate: Self.certificate("c1", renewedFrom: "a1"), previousSerial: "a1", replacing: nil,
                                              at: Self.now, budget: nil, audit: [Self.entry(.renew)])
        }
        #expect(try await store.certificate(serial: "c1") == nil)
        let replaced = try await store.recordRenewal(certificate: Self.certificate("d1", renewedFrom: "a1"), previousSerial: "a1",
                                                     replacing: "b1", at: Self.now, budget: nil, audit: [Self.entry(.renew)])
        #expect(replaced?.serial == "b1")
        #expect(replaced?.reason == 4)
        #expect(try await store.certificate(serial: "b1")?.revokedAt != nil)
        #expect(try await store.certificate(serial: "a1")?.supersededBy == "d1")
        #expect(try await store.renewals(of: "a1") == ["b1", "d1"])
        await #expect(throws: (any Error).self, "a second retry: a1 already has two renewals") {
            _ = try await store.recordRenewal(certificate: Self.certificate("f1", renewedFrom: "a1"), previousSerial: "a1",
                                              replacing: "d1", at: Self.now, budget: nil, audit: [])
        }
        #expect(try await store.certificate(serial: "d1")?.revokedAt == nil, "the refused retry revoked nothing")

        _ = try await store.revoke(serial: "d1", reason: 0, at: Self.now, withRenewals: false, budget: nil) { serial, _ in Self.entry(.revoke, subject: serial) }
        await #expect(throws: (any Error).self, "a revoked certificate does not renew") {
            _ = try await store.recordRenewal(certificate: Self.certificate("e1", renewedFrom: "d1"), previousSerial: "d1", replacing: nil,
                                              at: Self.now, budget: nil, audit: [Self.entry(.renew)])
        }
        #expect(try await Self.verified(store))
    }

    /// The race a retry must lose: the child renewed after the authority looked, before the retry's transaction.
    @Test(arguments: StoreKind.allCases)
    func aRetryCannotReplaceAChildThatHasRenewed(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertCertificate(Self.certificate("a2"), audit: Self.entry(.issue))
        _ = try await store.recordRenewal(certificate: Self.certificate("b2", renewedFrom: "a2"), previousSerial: "a2", replacing: nil,
                                          at: Self.now, budget: nil, audit: [])
        _ = try await store.recordRenewal(certificate: Self.certificate("c2", renewedFrom: "b2"), previousSerial: "b2", replacing: nil,
                                          at: Self.now, budget: nil, audit: [])
        await #expect(throws: (any Error).self) {
            _ = try await store.recordRenewal(certificate: Self.certificate("d2", renewedFrom: "a2"), previousSerial: "a2",
                                              replacing: "b2", at: Self.now, budget: nil, audit: [])
        }
        #expect(try await store.certificate(serial: "d2") == nil)
        #expect(try await store.certificate(serial: "b2")?.revokedAt == nil, "two live certificates would remain otherwise")
    }

    @Test(arguments: StoreKind.allCases)
    func revocationCoversTheLineageOnlyWhenAsked(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertCertificate(Self.certificate("0a"), audit: Self.entry(.issue))
        _ = try await store.recordRenewal(certificate: Self.certificate("0b", renewedFrom: "0a"), previousSerial: "0a", replacing: nil,
                                          at: Self.now, budget: nil, audit: [])
        _ = try await store.recordRenewal(certificate: Self.certificate("0c", renewedFrom: "0b"), previousSerial: "0b", replacing: nil,
                                          at: Self.now, budget: nil, audit: [])
        try await store.insertCertificate(Self.certificate("ff", id: "spiffe://example.org/svc/other"), audit: Self.entry(.issue))
        #expect(try await store.revoke(serial: "99", reason: 1, at: Self.now, withRenewals: true, budget: nil) { _, _ in Self.entry(.revoke) }.isEmpty)

        let single = try await store.revoke(serial: "0b", reason: 3, at: Self.now, withRenewals: false, budget: nil) { serial, _ in
            Self.entry(.revoke, subject: serial)
        }
        #expect(single.map(\.serial) == ["0b"])
        #expect(try await store.certificate(serial: "0c")?.revokedAt == nil)

        let lineage = try await store.revoke(serial: "0a", reason: 1, at: Self.now.addingTimeInterval(5), withRenewals: true, budget: nil) { serial, id in
            Self.entry(.revoke, subject: "\(serial) \(id)")
        }
        #expect(lineage.map(\.serial) == ["0a", "0b", "0c"])
        #expect(lineage.first { $0.serial == "0b" }?.reason == 3, "an earlier revocation is kept")
        #expect(try await store.certificate(serial: "ff")?.revokedAt == nil)
        let audited = try await store.auditEvents(afterID: 0, limit: 20).filter { $0.entry.action == "revoke" }.map(\.entry.subject)
        #expect(audited == ["0b", "0a spiffe://example.org/svc/web", "0c spiffe://example.org/svc/web"], "only new revocations are audited")

        let all = try await store.revocations(afterSequence: 0)
        #expect(all.map(\.serial) == ["0b", "0a", "0c"])
        #expect(try await store.revocations(afterSequence: all[0].sequence).map(\.serial) == ["0a", "0c"])
    }

    @Test(arguments: StoreKind.allCases)
    func aRevocationBudgetIsSpentInTheTransactionThatRevokes(kind: StoreKind) async throws {
        let store = try await kind.make()
        let web = "spiffe://example.org/svc/web"
        let budget = RevocationBudget(actor: web, now: Self.now, window: 86400, limit: 3)
        for serial in ["a1", "a2", "a3", "a4", "a5", "a6"] {
            try await store.insertCertificate(Self.certificate(serial), audit: Self.entry(.issue))
        }
        // Six revocations in flight together: the budget lets exactly three through.
        let outcomes = await withTaskGroup(of: AuthorityError.Kind?.self) { group in
            for serial in ["a1", "a2", "a3", "a4", "a5", "a6"] {
                group.addTask {
                    await refusal {
                        try await store.revoke(serial: serial, reason: 1, at: Self.now, withRenewals: false, budget: budget) { revoked, _ in
                            Self.entry(.revoke, actor: web, subject: revoked)
                        }
                    }
                }
            }
            return await group.reduce(into: [AuthorityError.Kind?]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == nil }.count == 3, "\(outcomes)")
        #expect(outcomes.filter { $0 == .resourceExhausted }.count == 3, "\(outcomes)")
        #expect(try await store.revocations(afterSequence: 0).count == 3, "a refused revocation stores nothing")

        // A lineage that would pass the budget is refused whole; a retry's revocation counts too.
        try await store.insertCertificate(Self.certificate("b1"), audit: Self.entry(.issue))
        _ = try await store.recordRenewal(certificate: Self.certificate("b2", renewedFrom: "b1"), previousSerial: "b1", replacing: nil,
                                          at: Self.now, budget: budget, audit: [])
        let roomy = RevocationBudget(actor: web, now: Self.now, window: 86400, limit: 4)
        #expect(await refusal {
            try await store.revoke(serial: "b1", reason: 1, at: Self.now, withRenewals: true, budget: roomy) { revoked, _ in
                Self.entry(.revokeLineage, actor: web, subject: revoked)
            }
        } == .resourceExhausted)
        #expect(try await store.certificate(serial: "b1")?.revokedAt == nil)
        #expect(await refusal {
            try await store.recordRenewal(certificate: Self.certificate("b3", renewedFrom: "b1"), previousSerial: "b1", replacing: "b2",
                                          at: Self.now, budget: budget, audit: [Self.entry(.revokeSuperseded, actor: web, subject: "b2")])
        } == .resourceExhausted)
        #expect(try await store.certificate(serial: "b3") == nil)
        #expect(try await store.certificate(serial: "b2")?.revokedAt == nil)
        // Another identity's budget is its own.
        let other = RevocationBudget(actor: "spiffe://example.org/svc/other", now: Self.now, window: 86400, limit: 1)
        #expect(await refusal {
            try await store.revoke(serial: "b2", reason: 1, at: Self.now, withRenewals: false, budget: other) { revoked, _ in
                Self.entry(.revoke, actor: "spiffe://example.org/svc/other", subject: revoked)
            }
        } == nil)
    }

    @Test(arguments: StoreKind.allCases)
    func listingsFilterPageAndCount(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertCertificate(Self.certificate("01", id: "spiffe://example.org/web/a", notAfter: 600), audit: Self.entry(.issue))
        try await store.insertCertificate(Self.certificate("02", id: "spiffe://example.org/web/b", notAfter: 86400), audit: Self.entry(.issue))
        try await store.insertCertificate(Self.certificate("03", id: "spiffe://example.org/db/a", notAfter: -10), audit: Self.entry(.issue))
        try await store.insertCertificate(Self.certificate("04", id: "spiffe://example.org/web/c", notAfter: 600), audit: Self.entry(.issue))
        _ = try await store.revoke(serial: "04", reason: 1, at: Self.now, withRenewals: false, budget: nil) { _, _ in Self.entry(.revoke) }
        func serials(_ query: CertificateQuery) async throws -> [String] { try await store.listCertificates(query).map(\.serial) }
        #expect(try await serials(CertificateQuery(now: Self.now, limit: 10)) == ["04", "03", "02", "01"], "newest first")
        #expect(try await serials(CertificateQuery(identityGlob: "spiffe://example.org/web/*", now: Self.now, limit: 10)) == ["04", "02", "01"])
        #expect(try await serials(CertificateQuery(status: .active, now: Self.now, limit: 10)) == ["02", "01"])
        #expect(try await serials(CertificateQuery(status: .revoked, now: Self.now, limit: 10)) == ["04"])
        #expect(try await serials(CertificateQuery(status: .expired, now: Self.now, limit: 10)) == ["03"])
        #expect(try await serials(CertificateQuery(expiringWithin: 3600, now: Self.now, limit: 10)) == ["04", "01"])
        let firstPage = try await store.listCertificates(CertificateQuery(now: Self.now, limit: 2))
        #expect(firstPage.map(\.serial) == ["04", "03"])
        #expect(try await serials(CertificateQuery(now: Self.now, limit: 2, beforeID: firstPage.last?.id)) == ["02", "01"])
        #expect(try await store.countCertificates(CertificateQuery(identityGlob: "spiffe://example.org/web/?", now: Self.now, limit: 1)) == 3,
                "counting ignores the limit")
        #expect(try await store.certificate(serial: "04")?.revocationReason == 1)
    }

    /// CRLs taken while revocations commit (on PostgreSQL over several pooled connections, as
    /// replicas would): a higher number never lists fewer revocations (a relying party keeping the
    /// highest-numbered CRL would lose one).
    @Test(arguments: StoreKind.allCases)
    func aHigherCRLNumberNeverListsFewerRevocations(kind: StoreKind) async throws {
        let store = try await kind.make()
        let issuer = try await Self.adopted(store).intermediate.id
        let serials = (0..<30).map { String(format: "c%02x", $0) }
        for serial in serials { try await store.insertCertificate(Self.certificate(serial), audit: Self.entry(.issue)) }
        let crls = try await withThrowingTaskGroup(of: [(Int64, Set<String>)].self) { group in
            for serial in serials {
                group.addTask {
                    _ = try await store.revoke(serial: serial, reason: 1, at: Self.now, withRenewals: false, budget: nil) { revoked, _ in
                        Self.entry(.revoke, subject: revoked)
                    }
                    return []
                }
                group.addTask {
                    let (number, revocations) = try await store.nextCRLNumberAndRevocations(issuerID: issuer)
                    return [(number, Set(revocations.map(\.serial)))]
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }.sorted { $0.0 < $1.0 }
        #expect(Set(crls.map(\.0)).count == serials.count, "every number once")
        for (earlier, later) in zip(crls, crls.dropFirst()) {
            #expect(later.1.isSuperset(of: earlier.1), "CRL \(later.0) lists fewer than \(earlier.0)")
        }
        #expect(try await store.nextCRLNumberAndRevocations(issuerID: issuer).revocations.count == serials.count)
    }

    @Test(arguments: StoreKind.allCases)
    func crlNumbersAndTheAuditChain(kind: StoreKind) async throws {
        let store = try await kind.make()
        let issuer = try await Self.adopted(store).intermediate.id
        var numbers: [Int64] = []
        for _ in 1...3 { numbers.append(try await store.nextCRLNumberAndRevocations(issuerID: issuer).number) }
        #expect(numbers[0] < numbers[1] && numbers[1] < numbers[2])
        for minute in 0..<5 {
            try await store.appendAudit(Self.entry(.revoke, actor: minute % 2 == 0 ? "spiffe://example.org/svc/web" : "other",
                                                   at: Self.now.addingTimeInterval(Double(minute) * 60)))
        }
        #expect(try await store.auditEvents(afterID: 2, limit: 2).map(\.id) == [3, 4])
        #expect(try await store.auditChainRows(afterID: 3).map(\.id) == [4, 5])
        #expect(try await store.auditHead()?.id == 5)
        #expect(try await Self.verified(store))

        let checkpoint = AuditCheckpoint(rowID: 5, hash: try await store.auditHead()?.hash ?? [], time: Self.now, signer: "01", signature: [1, 2])
        try await store.appendAuditCheckpoint(checkpoint)
        try await store.appendAuditCheckpoint(AuditCheckpoint(rowID: 5, hash: checkpoint.hash, time: Self.now.addingTimeInterval(1),
                                                              signer: "01", signature: [3]))
        #expect(try await store.auditCheckpoints().count == 2)
        #expect(try await store.latestAuditCheckpoint()?.signature == [3])
    }
}
