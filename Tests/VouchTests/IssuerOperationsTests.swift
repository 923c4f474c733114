import Foundation
import Testing
import VouchAuthority
import VouchCrypto

/// The steps behind `vouch ca intermediate rotate` and `vouch ca root prepare|activate|retire`
/// on the in-memory store: what each records, and the exact refusals an operator reads.
@Suite("Issuer operations")
struct IssuerOperationsTests {
    let clock = TestClock()
    let store = InMemoryAuthorityStore()
    let rootKey: PrivateKey
    let root: X509Certificate
    let intermediateSigner: CertificateSigner

    init() async throws {
        let now = clock.now
        rootKey = try PrivateKey(generating: .p256)
        root = try CertificateSigner.selfSigned(key: rootKey, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("O", "Vouch"), ("CN", "Vouch Root CA")],
            notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(10 * 365 * 86400)))
        let intermediate = try IssuerLifecycle.intermediate(under: try CertificateSigner(certificate: root, key: rootKey), now: now)
        intermediateSigner = try CertificateSigner(certificate: intermediate.certificate, key: intermediate.key)
        func record(_ kind: IssuerKind, _ certificate: X509Certificate, _ keyRef: String) -> IssuerRecord {
            IssuerRecord(kind: kind, state: .active, serial: certificate.serialHex, der: certificate.der, notBefore: certificate.notBefore,
                         notAfter: certificate.notAfter, keyRef: keyRef, createdAt: now)
        }
        _ = try await store.adoptInitialIssuers(root: record(.root, root, IssuerRecord.offlineKeyRef),
                                                intermediate: record(.intermediate, intermediate.certificate, IssuerRecord.initialKeyRef))
    }

    var operations: IssuerOperations { IssuerOperations(store: store, now: clock.now) }
    let inDatabase: (IssuerLifecycle.NewIssuer) throws -> IssuerOperations.KeyPlacement = {
        IssuerOperations.KeyPlacement(keyRef: IssuerRecord.databaseKeyRef, keyPEM: try $0.key.pkcs8PEM(passphrase: "secret"))
    }

    /// A live agent certificate from the initial intermediate (issuer id 2).
    @discardableResult
    func agent(_ name: String, lifetime: TimeInterval = 3600) async throws -> CertificateRecord {
        var record = try LocalIssuance.issue(signer: intermediateSigner, spiffeID: "spiffe://example.org/svc/\(name)",
                                             lifetime: lifetime, now: clock.now).record
        record.issuerID = 2
        try await store.insertCertificate(record, audit: AuditEntry(time: clock.now, actor: "test", action: .issue,
                                                                    subject: record.serial, peer: "test", detail: ""))
        return record
    }

    func prepare() async throws -> IssuerOperations.Preparation {
        try await operations.prepareRoot(rootKey: rootKey, rootKeyPath: "root_key.pem", placeRootKey: { _ in }, placeIntermediateKey: inDatabase)
    }

    func states() async throws -> [String] {
        try await store.issuers().issuers.map { "\($0.kind.rawValue) \($0.state.rawValue)" }
    }

    @Test("rotate: the new intermediate signs, the previous one is retiring, three audit rows")
    func rotate() async throws {
        let live = try await agent("web")
        let rotation = try await operations.rotateIntermediate(rootKey: rootKey, rootKeyPath: "root_key.pem", placeKey: inDatabase)
        #expect(try await states() == ["root active", "intermediate retiring", "intermediate active"])
        #expect(rotation.new.parentID == 1 && rotation.new.keyRef == "database" && rotation.previous.id == 2)
        let usage = try await operations.usage(of: rotation.previous, in: try await store.issuers())
        #expect(usage == IssuerOperations.Usage(live: 1, unexpired: 1, latestNotAfter: live.notAfter))
        let actions = try await store.auditEvents(afterID: 0, limit: 100).map(\.entry.action).suffix(3)
        #expect(Array(actions) == ["issuer.create", "issuer.activate", "issuer.retire"])

        // Once the previous intermediate's last certificate has expired, the next rotation retires it.
        clock.advance(3601)
        let again = try await operations.rotateIntermediate(rootKey: rootKey, rootKeyPath: "root_key.pem", placeKey: inDatabase)
        #expect(again.retired.map(\.id) == [2])
        #expect(try await states() == ["root active", "intermediate retired", "intermediate retiring", "intermediate active"])
    }

    @Test("rotate refuses a foreign root key and a rollover in progress, and records nothing")
    func rotateRefusesAForeignRootKeyAndARolloverInProgress() async throws {
        await #expect(throws: AuthorityError(.failedPrecondition, "/offline/other.pem is not the key of the active root \(root.serialHex)")) {
            try await operations.rotateIntermediate(rootKey: try PrivateKey(generating: .p256), rootKeyPath: "/offline/other.pem", placeKey: inDatabase)
        }
        #expect(try await store.issuerGeneration() == 1)
        let prepared = try await prepare()
        await #expect(throws: AuthorityError(.failedPrecondition, "root \(prepared.root.serial) is pending: finish the rollover first")) {
            try await operations.rotateIntermediate(rootKey: rootKey, rootKeyPath: "root_key.pem", placeKey: inDatabase)
        }
        await #expect(throws: AuthorityError(.failedPrecondition, "root \(prepared.root.serial) is pending: finish the rollover first")) {
            try await prepare()
        }
        _ = try await operations.activateRoot(force: true)
        await #expect(throws: AuthorityError(.failedPrecondition, "root \(root.serialHex) is retiring: finish the rollover first")) {
            try await operations.rotateIntermediate(rootKey: rootKey, rootKeyPath: "root_key.pem", placeKey: inDatabase)
        }
    }

    @Test("admin certificates expiring within 30 days are named; agents', renewed ones and later ones are not")
    func expiringAdminCertificates() async throws {
        var records: [CertificateRecord] = []
        for (id, days) in [("vouch/admin", 10.0), ("ops/alice", 20.0), ("ops/bob", 40.0), ("svc/web", 5.0)] {
            var record = try LocalIssuance.issue(signer: intermediateSigner, spiffeID: "spiffe://example.org/\(id)",
                                                 lifetime: days * 86400, now: clock.now).record
            record.issuerID = 2
            try await store.insertCertificate(record, audit: AuditEntry(time: clock.now, actor: "test", action: .issue,
                                                                        subject: record.serial, peer: "test", detail: ""))
            records.append(record)
        }
        let operations = IssuerOperations(store: store, now: clock.now,
                                          adminIDs: ["spiffe://example.org/vouch/admin", "spiffe://example.org/ops/alice", "spiffe://example.org/ops/bob"])
        #expect(try await operations.expiringAdminCertificates().map(\.spiffeID) == ["spiffe://example.org/vouch/admin", "spiffe://example.org/ops/alice"])
    }

    @Test("rotate refuses a root that expires within twice the longest certificate lifetime")
    func rotateRefusesAnExpiringRoot() async throws {
        clock.advance(10 * 365 * 86400 - 86400)
        await #expect(throws: AuthorityError(.failedPrecondition, "the root expires at \(root.notAfter.formatted(.iso8601)): roll the root over instead")) {
            try await operations.rotateIntermediate(rootKey: rootKey, rootKeyPath: "root_key.pem", placeKey: inDatabase)
        }
    }

    @Test("activate and retire refuse unless safe or forced; the endorsement outlives the retire")
    func activateAndRetireRefuseUnlessSafeOrForced() async throws {
        let web = try await agent("web")
        let prepared = try await prepare()
        #expect(try await states() == ["root active", "intermediate active", "root pending", "intermediate pending", "cross pending", "endorsement pending"])
        #expect(prepared.cross.parentID == 1 && prepared.cross.subjectID == prepared.intermediate.id)
        #expect(prepared.endorsement.parentID == 1 && prepared.endorsement.subjectID == prepared.root.id)
        await #expect(throws: AuthorityError(.failedPrecondition, "root \(prepared.root.serial) is pending: activate it first (vouch ca root activate)")) {
            try await operations.retireRoot(force: true)
        }
        await #expect(throws: AuthorityError(.failedPrecondition,
            "1 live agent has not confirmed the new bundle (first: spiffe://example.org/svc/web, serial \(web.serial)); "
            + "--force activates anyway: OpenSSL-based peers without the new root will refuse new certificates")) {
            try await operations.activateRoot(force: false)
        }
        try await store.recordTrustConfirmation(serial: web.serial, spiffeID: web.spiffeID, generation: prepared.generation,
                                                bundleSHA256: [1], peer: "test", at: clock.now)
        let activated = try await operations.activateRoot(force: false)
        #expect(activated.status.next.safe)
        #expect(try await states() == ["root retiring", "intermediate retiring", "root active", "intermediate active", "cross active", "endorsement active"])

        await #expect(throws: AuthorityError(.failedPrecondition,
            "1 live certificate still chains only to the old root (the last expires \(web.notAfter.formatted(.iso8601))); "
            + "--force retires anyway: those certificates fail at every peer that drops the old root")) {
            try await operations.retireRoot(force: false)
        }
        #expect(try await operations.status().next.safeAt == web.notAfter, "only time is left")
        let retired = try await operations.retireRoot(force: true)
        #expect(!retired.status.next.safe, "forced")
        #expect(try await states() == ["root retired", "intermediate retired", "root active", "intermediate active", "cross retired", "endorsement active"])
        let forced = try await store.auditEvents(afterID: 0, limit: 100).map(\.entry).filter { $0.action == "issuer.retire" && $0.detail.contains("forced") }
        #expect(forced.count == 3, "the audit log says the retire was forced")
        #expect(try await operations.status().stage == .none)
    }
}
