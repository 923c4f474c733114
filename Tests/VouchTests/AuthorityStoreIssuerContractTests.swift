import Foundation
import Testing
import VouchAuthority

/// The issuer part of the store contract (Issuers.swift), on every store.
extension AuthorityStoreContractTests {
    static func issuer(_ serial: String, _ kind: IssuerKind, _ state: IssuerState = .pending,
                       keyRef: String = IssuerRecord.offlineKeyRef) -> IssuerRecord {
        IssuerRecord(kind: kind, state: state, serial: serial, der: [0x30, 0x03, 0x02, 0x01, 0x01], notBefore: now,
                     notAfter: now.addingTimeInterval(86400 * 365), keyRef: keyRef, createdAt: now)
    }

    /// The CA directory's pair, adopted: (root, intermediate) as stored.
    static func adopted(_ store: any AuthorityStore) async throws -> (root: IssuerRecord, intermediate: IssuerRecord) {
        let snapshot = try await store.adoptInitialIssuers(root: issuer("r1", .root),
                                                           intermediate: issuer("i1", .intermediate, keyRef: IssuerRecord.initialKeyRef))
        return (try #require(snapshot.issuer(serial: "r1")), try #require(snapshot.issuer(serial: "i1")))
    }

    /// A new intermediate under `root`, active; `old` retiring.
    static func rotation(to serial: String, under root: Int64, retiring old: Int64) -> IssuerChange {
        IssuerChange(inserts: [.init(issuer(serial, .intermediate, .active, keyRef: "file:issuers/\(serial)/key.pem"), parent: .id(root))],
                     updates: [.init(id: old, state: .retiring)])
    }

    /// A new root R2 with its intermediate, cross certificate and endorsement, all pending.
    static func preparation(under oldRoot: Int64) -> IssuerChange {
        IssuerChange(inserts: [
            .init(issuer("r2", .root)),
            .init(issuer("i2", .intermediate, keyRef: IssuerRecord.databaseKeyRef), parent: .inserted(0)),
            .init(issuer("x2", .cross), parent: .id(oldRoot), subject: .inserted(1)),
            .init(issuer("e2", .endorsement), parent: .id(oldRoot), subject: .inserted(0)),
        ])
    }

    static func issuerRefusal(_ body: () async throws -> Void) async -> AuthorityError? {
        do {
            try await body()
            return nil
        } catch let error as AuthorityError {
            return error
        } catch {
            return AuthorityError(.internal, "\(error)")
        }
    }

    @Test(arguments: StoreKind.allCases)
    func adoptsTheInitialPairOnceAndBackfillsEveryCertificate(kind: StoreKind) async throws {
        let store = try await kind.make()
        #expect(try await store.issuerGeneration() == 0)
        #expect(try await store.issuers() == IssuerSnapshot(generation: 0, issuers: []))
        try await store.insertCertificate(Self.certificate("01"), audit: Self.entry(.issue))
        try await store.insertCertificate(Self.certificate("02"), audit: Self.entry(.issue))

        let (root, intermediate) = try await Self.adopted(store)
        #expect((root.state, root.parentID, root.createdGeneration) == (.active, nil, 1))
        #expect((intermediate.state, intermediate.parentID, intermediate.keyRef) == (.active, root.id, "initial"))
        #expect(try await store.issuerGeneration() == 1)
        #expect(try await store.certificate(serial: "01")?.issuerID == intermediate.id)
        #expect(try await store.certificate(serial: "02")?.issuerID == intermediate.id)

        let again = try await store.adoptInitialIssuers(root: Self.issuer("other-root", .root), intermediate: Self.issuer("other", .intermediate))
        #expect(again.generation == 1 && again.issuers.map(\.serial) == ["r1", "i1"], "a second adoption changes nothing")
    }

    @Test(arguments: StoreKind.allCases)
    func oneActiveRootAndOneActiveIntermediate(kind: StoreKind) async throws {
        let store = try await kind.make()
        let (r1, i1) = try await Self.adopted(store)
        let second = IssuerChange(inserts: [.init(Self.issuer("i9", .intermediate, .active), parent: .id(r1.id))])
        let refused = await Self.issuerRefusal { _ = try await store.changeIssuers(second, expectedGeneration: 1, audit: [Self.entry(.issuerCreate)]) }
        #expect(refused?.kind == .failedPrecondition)
        #expect(refused?.message.contains("i1") == true, "names the active one: \(String(describing: refused))")

        let rotated = try await store.changeIssuers(Self.rotation(to: "i3", under: r1.id, retiring: i1.id), expectedGeneration: 1,
                                                    audit: [Self.entry(.issuerCreate, subject: "i3"), Self.entry(.issuerRetire, subject: "i1")])
        #expect(rotated == 2)
        let prepared = try await store.changeIssuers(Self.preparation(under: r1.id), expectedGeneration: 2, audit: [Self.entry(.issuerCreate)])
        var snapshot = try await store.issuers()
        let (r2, i2, x2, e2) = (try #require(snapshot.issuer(serial: "r2")), try #require(snapshot.issuer(serial: "i2")),
                                try #require(snapshot.issuer(serial: "x2")), try #require(snapshot.issuer(serial: "e2")))
        #expect((i2.parentID, x2.parentID, x2.subjectID, e2.parentID, e2.subjectID) == (r2.id, r1.id, i2.id, r1.id, r2.id))
        #expect([r2, i2, x2, e2].allSatisfy { $0.createdGeneration == prepared && $0.state == .pending })
        #expect(snapshot.issuer(serial: "i3")?.createdGeneration == 2)

        // Activations listed first: the store still retires the old ones before.
        let i3 = try #require(snapshot.issuer(serial: "i3"))
        let activation = IssuerChange(updates: [.init(id: r2.id, state: .active), .init(id: i2.id, state: .active), .init(id: x2.id, state: .active),
                                                .init(id: r1.id, state: .retiring), .init(id: i3.id, state: .retiring)])
        #expect(try await store.changeIssuers(activation, expectedGeneration: prepared, audit: [Self.entry(.issuerActivate)]) == prepared + 1)
        snapshot = try await store.issuers()
        #expect(snapshot.activeRoot?.serial == "r2" && snapshot.activeIntermediate?.serial == "i2")
        #expect(snapshot.issuers.map { "\($0.serial)=\($0.state.rawValue)" }
                == ["r1=retiring", "i1=retiring", "i3=retiring", "r2=active", "i2=active", "x2=active", "e2=pending"])
        #expect(try await store.auditEvents(afterID: 0, limit: 10).map(\.entry.action)
                == ["issuer.create", "issuer.retire", "issuer.create", "issuer.activate"], "the refused change left no audit row")
        #expect(try await Self.verified(store))
    }

    @Test(arguments: StoreKind.allCases)
    func staleGenerationChangeIsRefusedAndChangesNothing(kind: StoreKind) async throws {
        let store = try await kind.make()
        let (r1, i1) = try await Self.adopted(store)
        let before = try await store.issuers()
        let refused = await Self.issuerRefusal {
            _ = try await store.changeIssuers(Self.rotation(to: "i3", under: r1.id, retiring: i1.id), expectedGeneration: 0,
                                              audit: [Self.entry(.issuerCreate)])
        }
        #expect(refused == AuthorityError(.failedPrecondition, "the issuers changed meanwhile; run status again"))
        #expect(try await store.issuers() == before)
        #expect(try await store.auditEvents(afterID: 0, limit: 10).isEmpty)
    }

    @Test(arguments: StoreKind.allCases)
    func crlNumbersArePerIssuerAndTheActiveNumberNeverDrops(kind: StoreKind) async throws {
        let store = try await kind.make()
        let (r1, i1) = try await Self.adopted(store)
        for _ in 1...5 { _ = try await store.nextCRLNumberAndRevocations(issuerID: i1.id) }
        _ = try await store.changeIssuers(Self.rotation(to: "i3", under: r1.id, retiring: i1.id), expectedGeneration: 1, audit: [])
        let i3 = try #require(try await store.issuers().issuer(serial: "i3"))
        #expect(i3.crlNumber == 5, "the new active intermediate continues from the highest number")
        #expect(try await store.nextCRLNumberAndRevocations(issuerID: i3.id).number == 6, "/crl went 5 (i1), then 6 (i3)")
        #expect(try await store.nextCRLNumberAndRevocations(issuerID: i1.id).number == 6, "the retiring one keeps its own sequence")
        #expect(try await store.nextCRLNumberAndRevocations(issuerID: i1.id).number == 7)
        #expect(try await store.nextCRLNumberAndRevocations(issuerID: i3.id).number == 7)
        let unknown = await Self.issuerRefusal { _ = try await store.nextCRLNumberAndRevocations(issuerID: 999) }
        #expect(unknown?.kind == .notFound)
    }

    @Test(arguments: StoreKind.allCases)
    func aCRLListsOnlyItsIssuersRevocations(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertCertificate(Self.certificate("0a"), audit: Self.entry(.issue))
        let (r1, i1) = try await Self.adopted(store)
        _ = try await store.changeIssuers(Self.rotation(to: "i3", under: r1.id, retiring: i1.id), expectedGeneration: 1, audit: [])
        let i3 = try #require(try await store.issuers().issuer(serial: "i3"))
        // A replica not upgraded yet writes no issuer: the initial intermediate's.
        try await store.insertCertificate(Self.certificate("0b"), audit: Self.entry(.issue))
        // Each write path keeps the issuer it is given.
        try await store.insertToken(Self.token("cccc000000000001"), audit: Self.entry(.tokenCreate))
        var enrolled = Self.certificate("0c", id: "spiffe://example.org/svc/cccc000000000001")
        enrolled.issuerID = i3.id
        try await store.recordEnrollment(tokenID: "cccc000000000001", now: Self.now, certificate: enrolled, audit: [Self.entry(.enroll)])
        var renewed = Self.certificate("0d", renewedFrom: "0a")
        renewed.issuerID = i3.id
        _ = try await store.recordRenewal(certificate: renewed, previousSerial: "0a", replacing: nil, at: Self.now, budget: nil,
                                          audit: [Self.entry(.renew)])
        #expect(try await store.certificate(serial: "0c")?.issuerID == i3.id)
        #expect(try await store.certificate(serial: "0d")?.issuerID == i3.id)
        #expect(try await store.certificate(serial: "0b")?.issuerID == nil)

        for serial in ["0a", "0b", "0c", "0d"] {
            _ = try await store.revoke(serial: serial, reason: 1, at: Self.now, withRenewals: false, budget: nil) { serial, _ in
                Self.entry(.revoke, subject: serial)
            }
        }
        #expect(try await store.revocations(afterSequence: 0).map(\.issuerID) == [i1.id, nil, i3.id, i3.id])
        #expect(try await store.nextCRLNumberAndRevocations(issuerID: i1.id).revocations.map(\.serial) == ["0a", "0b"])
        #expect(try await store.nextCRLNumberAndRevocations(issuerID: i3.id).revocations.map(\.serial) == ["0c", "0d"])
    }

    @Test(arguments: StoreKind.allCases)
    func rolloverCountsSkipExpiredRevokedAndSupersededCertificates(kind: StoreKind) async throws {
        let store = try await kind.make()
        let (r1, i1) = try await Self.adopted(store)
        let prepared = try await store.changeIssuers(Self.preparation(under: r1.id), expectedGeneration: 1, audit: [])
        let i2 = try #require(try await store.issuers().issuer(serial: "i2"))
        func insert(_ serial: String, id: String = "spiffe://example.org/svc/\(UUID().uuidString.prefix(8))", issuer: Int64?,
                    notAfter: TimeInterval = 3600) async throws {
            var certificate = Self.certificate(serial, id: id, notAfter: notAfter)
            certificate.issuerID = issuer
            try await store.insertCertificate(certificate, audit: Self.entry(.issue))
        }
        try await insert("a1", issuer: i1.id)
        try await insert("a2", issuer: nil, notAfter: 7200)
        try await insert("e1", issuer: i1.id, notAfter: -60)
        try await insert("r1", issuer: i1.id)
        _ = try await store.revoke(serial: "r1", reason: 1, at: Self.now, withRenewals: false, budget: nil) { _, _ in Self.entry(.revoke) }
        try await insert("s1", id: "spiffe://example.org/svc/s", issuer: i1.id)
        var renewal = Self.certificate("s2", id: "spiffe://example.org/svc/s", renewedFrom: "s1")
        renewal.issuerID = i2.id
        _ = try await store.recordRenewal(certificate: renewal, previousSerial: "s1", replacing: nil, at: Self.now, budget: nil, audit: [])
        try await insert("v1", id: "spiffe://example.org/vouch/server", issuer: i1.id)
        try await insert("m1", id: "spiffe://example.org/ops/alice", issuer: i1.id, notAfter: 600)
        try await store.recordTrustConfirmation(serial: "s2", spiffeID: "spiffe://example.org/svc/s", generation: prepared,
                                                bundleSHA256: [1], peer: "10.0.0.2", at: Self.now)
        try await store.recordTrustConfirmation(serial: "a1", spiffeID: "x", generation: prepared - 1, bundleSHA256: [1], peer: "p", at: Self.now)

        let counts = try await store.rolloverCounts(rootID: r1.id, generation: prepared, now: Self.now,
                                                    adminIDs: ["spiffe://example.org/ops/alice"])
        #expect(counts.rootCertificates == 2 && counts.rootSample.map(\.serial) == ["a2", "a1"], "latest first")
        #expect(counts.rootLatestNotAfter == Self.now.addingTimeInterval(7200))
        #expect((counts.liveAgents, counts.confirmedAgents, counts.unconfirmedAgents) == (3, 1, 2))
        #expect(counts.unconfirmedSample.map(\.serial) == ["a1", "a2"], "a confirmation of an older generation does not count")
        #expect(counts.ownCertificates == 2 && counts.ownSample.map(\.serial) == ["v1", "m1"])
        #expect(counts.ownLatestNotAfter == Self.now.addingTimeInterval(3600))

        let underNewRoot = try await store.rolloverCounts(rootID: i2.parentID!, generation: prepared, now: Self.now)
        #expect(underNewRoot.rootSample.map(\.serial) == ["s2"])
        #expect(underNewRoot.liveAgents == 4, "without admin IDs, only /vouch/ identities are the CA's own")
    }

    @Test(arguments: StoreKind.allCases)
    func trustConfirmationIsAnUpsertBySerial(kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.insertCertificate(Self.certificate("01"), audit: Self.entry(.issue))
        let id = "spiffe://example.org/svc/web"
        try await store.recordTrustConfirmation(serial: "01", spiffeID: id, generation: 3, bundleSHA256: [3], peer: "a", at: Self.now)
        try await store.recordTrustConfirmation(serial: "01", spiffeID: id, generation: 5, bundleSHA256: [5], peer: "b",
                                                at: Self.now.addingTimeInterval(1))
        try await store.recordTrustConfirmation(serial: "01", spiffeID: id, generation: 4, bundleSHA256: [4], peer: "c",
                                                at: Self.now.addingTimeInterval(2))
        #expect(try await store.trustConfirmations() == [
            TrustConfirmation(serial: "01", spiffeID: id, generation: 5, bundleSHA256: [5], confirmedAt: Self.now.addingTimeInterval(1), peer: "b"),
        ], "one row per serial; a late, older report does not lower it")
        let unknown = await Self.issuerRefusal {
            try await store.recordTrustConfirmation(serial: "ff", spiffeID: id, generation: 5, bundleSHA256: [5], peer: "b", at: Self.now)
        }
        #expect(unknown?.kind == .notFound)
        #expect(try await store.auditEvents(afterID: 0, limit: 10).map(\.entry.action) == ["issue"], "confirmations are not audited")
    }
}
