import Foundation
import Testing
@testable import vouch
@testable import VouchAPI
import VouchAuthority
@testable import VouchCrypto
@testable import VouchHTTP
import VouchSQLiteStore

/// The root's CRL (RootCRL.swift): signed by the root wherever its key is in hand, numbered ever
/// higher, served only when the root signed it, and warned about before it expires.
@Suite("Root CRL")
struct RootCRLTests {
    /// A CA made by `ca init`'s code, with its root key at hand.
    struct InitializedCA {
        let files: CAFiles
        let store: SQLiteAuthorityStore
        let rootKey: PrivateKey
        let root: X509Certificate

        init() async throws {
            files = CAFiles(directory: try temporaryDirectory() + "/ca")
            store = try await initializeCA(CAInitializer(files: files, trustDomain: "example.org", passphrase: nil))
            rootKey = try PrivateKey(pem: try String(contentsOfFile: files.rootKey, encoding: .utf8), passphrase: nil)
            root = try X509Certificate(pem: try String(contentsOfFile: files.rootCertificate, encoding: .utf8))
        }

        var operations: IssuerOperations { IssuerOperations(store: store, now: Date()) }
    }

    static func inDatabase(_ issuer: IssuerLifecycle.NewIssuer) throws -> IssuerOperations.KeyPlacement {
        IssuerOperations.KeyPlacement(keyRef: IssuerRecord.databaseKeyRef, keyPEM: try issuer.key.pkcs8PEM(passphrase: "secret"))
    }

    /// The stored CRL of root `serial`, checked: signed by `root`, issued by its name, numbered `number`.
    static func crl(of serial: String, in store: any AuthorityStore, signedBy root: X509Certificate, number: Int64,
                    sourceLocation: SourceLocation = #_sourceLocation) async throws -> CertificateRevocationList {
        let record = try #require(try await store.issuers().issuer(serial: serial), sourceLocation: sourceLocation)
        let crl = try CertificateRevocationList(der: try #require(record.crlDER, sourceLocation: sourceLocation))
        #expect(crl.isSigned(by: root) && crl.isIssued(by: root), sourceLocation: sourceLocation)
        #expect(crl.number == number && record.crlNumber == number, sourceLocation: sourceLocation)
        #expect(RootCRL.problem(with: record) == nil, sourceLocation: sourceLocation)
        return crl
    }

    @Test("ca init, intermediate rotate, root prepare and root crl each sign the root's CRL with its key; the number only grows")
    func everyStepThatHoldsTheRootKeySigns() async throws {
        let ca = try await InitializedCA()
        let rootSerial = ca.root.serialHex
        let first = try await Self.crl(of: rootSerial, in: ca.store, signedBy: ca.root, number: 1)
        #expect(first.entries.isEmpty)
        let nextUpdate = try #require(first.nextUpdate)
        #expect(abs(nextUpdate.timeIntervalSinceNow - RootCRL.defaultLifetime) < 120, "365 days by default")
        #expect(first.thisUpdate < Date(), "backdated for relying parties whose clock is behind")

        _ = try await ca.operations.rotateIntermediate(rootKey: ca.rootKey, rootKeyPath: ca.files.rootKey, placeKey: Self.inDatabase)
        _ = try await Self.crl(of: rootSerial, in: ca.store, signedBy: ca.root, number: 2)

        let prepared = try await ca.operations.prepareRoot(rootKey: ca.rootKey, rootKeyPath: ca.files.rootKey,
                                                           placeRootKey: { _ in }, placeIntermediateKey: Self.inDatabase)
        _ = try await Self.crl(of: rootSerial, in: ca.store, signedBy: ca.root, number: 3)
        let newRoot = prepared.made.root.certificate
        let newFirst = try await Self.crl(of: prepared.root.serial, in: ca.store, signedBy: newRoot, number: 1)
        #expect(!newFirst.isSigned(by: ca.root), "the new root's CRL is its own")

        var operations = ca.operations
        operations.rootCRLLifetime = 30 * 86400
        let signed = try await operations.signRootCRL(rootKey: prepared.made.root.key, keyPath: "r2.pem")
        #expect((signed.root.serial, signed.crl.number, signed.revoked) == (prepared.root.serial, 2, 0))
        let renewed = try await Self.crl(of: prepared.root.serial, in: ca.store, signedBy: newRoot, number: 2)
        #expect(abs((renewed.nextUpdate ?? .distantPast).timeIntervalSinceNow - 30 * 86400) < 120)
        await #expect(throws: AuthorityError(.failedPrecondition, "--root-key other.pem is not the key of any current root")) {
            try await ca.operations.signRootCRL(rootKey: try PrivateKey(generating: .p256), keyPath: "other.pem")
        }
        let audit = try await ca.store.auditEvents(afterID: 0, limit: 100).map(\.entry).filter { $0.action == AuditAction.issuerCRL.rawValue }
        #expect(audit.map { $0.detail }.map { $0.components(separatedBy: " (").last ?? "" }
                == ["ca init)", "ca intermediate rotate)", "ca root prepare)", "ca root prepare)", "ca root crl)"])
    }

    @Test("intermediate revoke: listed in its root's next CRL and retired; refused for the signing one, a root, a foreign key, twice")
    func revokingAnIntermediate() async throws {
        let ca = try await InitializedCA()
        let first = try #require(try await ca.store.issuers().activeIntermediate)
        let rotation = try await ca.operations.rotateIntermediate(rootKey: ca.rootKey, rootKeyPath: ca.files.rootKey, placeKey: Self.inDatabase)
        func revoke(_ serial: String, _ reason: RevocationReason = .keyCompromise, key: PrivateKey? = nil) async throws -> IssuerOperations.IntermediateRevocation {
            try await ca.operations.revokeIntermediate(serial: serial, reason: reason, rootKey: key ?? ca.rootKey, rootKeyPath: "root_key.pem")
        }
        let generation = try await ca.store.issuerGeneration()
        await #expect(throws: AuthorityError(.failedPrecondition, "rotate first: intermediate \(rotation.new.serial) signs now "
            + "(vouch ca intermediate rotate makes another sign, then revoke this one)")) { try await revoke(rotation.new.serial) }
        await #expect(throws: AuthorityError(.failedPrecondition, "issuer \(ca.root.serialHex) is a root certificate, not an intermediate")) {
            try await revoke(ca.root.serialHex)
        }
        await #expect(throws: AuthorityError(.failedPrecondition, "--root-key root_key.pem is not the key of root \(ca.root.serialHex), which signed \(first.serial)")) {
            try await revoke(first.serial, key: try PrivateKey(generating: .p256))
        }
        await #expect(throws: AuthorityError(.invalidArgument, "--reason unspecified is not one of keyCompromise, cessationOfOperation, superseded")) {
            try await revoke(first.serial, .unspecified)
        }
        #expect(try await ca.store.issuerGeneration() == generation, "refusals change nothing")

        let revoked = try await revoke(first.serial)
        #expect(revoked.liveCertificates == 2, "ca init's server and admin certificates")
        #expect((revoked.intermediate.state, revoked.intermediate.revocationReason) == (.retired, 1))
        let crl = try await Self.crl(of: ca.root.serialHex, in: ca.store, signedBy: ca.root, number: 3)
        #expect(crl.entries.map { "\(SerialNumber.hex($0.serial)) \($0.reason)" } == ["\(first.serial) 1"])
        await #expect(throws: AuthorityError(.failedPrecondition, "intermediate \(first.serial) is revoked already")) { try await revoke(first.serial) }
        // The next CRL of the root keeps listing it.
        _ = try await ca.operations.signRootCRL(rootKey: ca.rootKey, keyPath: "root_key.pem")
        #expect(try await Self.crl(of: ca.root.serialHex, in: ca.store, signedBy: ca.root, number: 4).entries.count == 1)
    }

    @Test("a root CRL the root did not sign, or with another issuer name or number, is not served and is named in one line")
    func aCRLNotTheRootsIsDropped() async throws {
        let world = try IssuerWorld()
        try await world.authority.start()
        let root = try #require(world.authority.issuerSet.roots.first)
        #expect(await Self.http(world, "/crl/\(root.serial)").status == 404, "an upgraded CA: no root CRL yet")

        // A database writer stores a CRL signed by a key of its own.
        let otherKey = try PrivateKey(generating: .p256)
        let other = try CertificateSigner.selfSigned(key: otherKey, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Test Root")],
            notBefore: world.clock.now.addingTimeInterval(-60), notAfter: world.clock.now.addingTimeInterval(86400)))
        let planted = try RootCRL.sign(root: other, key: otherKey, entries: [], number: 1, now: world.clock.now)
        let snapshot = try await world.store.issuers()
        _ = try await world.store.changeIssuers(
            IssuerChange(rootCRLs: [.init(root: .id(root.id), der: planted, number: 1, nextUpdate: world.clock.now.addingTimeInterval(86400))]),
            expectedGeneration: snapshot.generation, audit: [])
        #expect(try await world.authority.reloadIssuers())
        let set = world.authority.issuerSet
        #expect(set.rootCRLs.isEmpty && Vouch_V1_TrustBundle(set).rootCrls.isEmpty)
        #expect(set.rootCRLWarnings == ["root CRL of \(root.serial) dropped: it is not signed by the root's key"])
        #expect(await Self.http(world, "/crl/\(root.serial)").status == 404)
        let log = CollectedLog()
        await IssuerHousekeeping(store: world.store, adminIDs: [], directory: "/srv/ca", logger: log.logger).warnAboutRootCRLs()
        #expect(log.lines == ["warning root CRL of \(root.serial) dropped: it is not signed by the root's key "])

        // Signed by the root's key, but for another name, or under another number than the row's.
        let rootCertificate = try #require(set.certificate(root))
        let renamed = try CertificateSigner.selfSigned(key: world.rootSigner.key, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Another Root")],
            notBefore: world.clock.now.addingTimeInterval(-60), notAfter: world.clock.now.addingTimeInterval(86400)))
        var record = root
        (record.crlDER, record.crlNumber) = (try RootCRL.sign(root: renamed, key: world.rootSigner.key, entries: [], number: 1, now: world.clock.now), 1)
        #expect(RootCRL.problem(with: record) == "its issuer name is not the root's")
        (record.crlDER, record.crlNumber) = (try RootCRL.sign(root: rootCertificate, key: world.rootSigner.key, entries: [], number: 1,
                                                              now: world.clock.now), 5)
        #expect(RootCRL.problem(with: record) == "its number 1 is not the stored 5")
        record.crlNumber = 1
        #expect(RootCRL.problem(with: record) == nil)
    }

    @Test("the served root CRL: /crl/<root serial>, /crl/all.pem after the intermediates', GetCRL and TrustBundle.root_crls")
    func theRootsCRLIsServedEverywhere() async throws {
        let world = try IssuerWorld()
        try await world.authority.start()
        let root = try #require(world.authority.issuerSet.roots.first)
        let update = try RootCRL.update(root: root, key: world.rootSigner.key, issuers: try await world.store.issuers().issuers, now: world.clock.now)
        _ = try await world.store.changeIssuers(IssuerChange(rootCRLs: [update]), expectedGeneration: world.authority.issuerSet.generation, audit: [])
        #expect(try await world.authority.reloadIssuers())
        let set = world.authority.issuerSet
        #expect(set.rootCRLWarnings.isEmpty && Vouch_V1_TrustBundle(set).rootCrls == [Data(update.der)])
        let response = await Self.http(world, "/crl/\(root.serial)")
        #expect(response.status == 200 && response.body == update.der)
        let all = String(decoding: await Self.http(world, "/crl/all.pem").body, as: UTF8.self)
        let pems = all.components(separatedBy: "-----BEGIN X509 CRL-----").dropFirst()
        #expect(pems.count == 2, "the intermediate's, then the root's")
        #expect(all.hasSuffix(PEM.encode(update.der, label: "X509 CRL")))
        let served = try #require(try await world.authority.rootCRL(serial: root.serial.uppercased()))
        #expect(served.number == 1 && served.der == update.der)
        #expect(try await world.authority.rootCRL(serial: world.authority.issuerSet.active.serial) == nil, "an intermediate's serial")
    }

    @Test("through a root rollover: both roots' CRLs while clients trust both; a retired root's route answers 410")
    func acrossARollover() async throws {
        let world = try IssuerWorld()
        try await world.authority.start()
        let rootKey = world.rootSigner.key
        let operations = IssuerOperations(store: world.store, now: world.clock.now)
        _ = try await operations.signRootCRL(rootKey: rootKey, keyPath: "root_key.pem")
        let prepared = try await operations.prepareRoot(rootKey: rootKey, rootKeyPath: "root_key.pem", placeRootKey: { _ in }) {
            IssuerOperations.KeyPlacement(keyRef: IssuerRecord.databaseKeyRef, keyPEM: try $0.key.pkcs8PEM(passphrase: IssuerWorld.passphrase))
        }
        try await world.authority.reloadIssuers()
        let old = world.material.root.serialHex, new = prepared.root.serial
        #expect(world.authority.issuerSet.rootCRLs.map { "\($0.root) \($0.number)" } == ["\(old) 2", "\(new) 1"])
        #expect(Vouch_V1_TrustBundle(world.authority.issuerSet).rootCrls.count == 2)
        #expect(String(decoding: await Self.http(world, "/crl/all.pem").body, as: UTF8.self)
            .components(separatedBy: "-----BEGIN X509 CRL-----").count - 1 == 4, "both intermediates' (the pending one publishes too), both roots'")

        _ = try await operations.activateRoot(force: true)
        _ = try await operations.retireRoot(force: true)
        try await world.authority.reloadIssuers()
        #expect(world.authority.issuerSet.rootCRLs.map(\.root) == [new])
        #expect(await Self.http(world, "/crl/\(old)").status == 410)
        await #expect(throws: AuthorityError(.failedPrecondition, "root \(old) is retired")) { try await world.authority.rootCRL(serial: old) }
        #expect(await Self.http(world, "/crl/\(new)").status == 200)
    }

    @Test("housekeeping warns about a root without CRL and, from 30 days before, about one that expires")
    func expiryAndMissingCRLWarnings() async throws {
        let world = try IssuerWorld()
        try await world.authority.start()
        let root = try #require(world.authority.issuerSet.roots.first)
        let log = CollectedLog()
        let housekeeping = IssuerHousekeeping(store: world.store, adminIDs: [], directory: "/srv/ca", logger: log.logger,
                                              now: { [clock = world.clock] in clock.now })
        await housekeeping.warnAboutRootCRLs()
        let command = "vouch ca root crl --dir /srv/ca --root-key <the root's key>"
        let consequence = "nginx, HAProxy and PostgreSQL with CRL checks refuse every client"
        #expect(log.lines == ["warning root \(root.serial) has no CRL: run \(command); until then \(consequence) "])

        var operations = IssuerOperations(store: world.store, now: world.clock.now)
        operations.rootCRLLifetime = 40 * 86400
        let signed = try await operations.signRootCRL(rootKey: world.rootSigner.key, keyPath: "root_key.pem")
        await housekeeping.warnAboutRootCRLs()
        #expect(log.lines.count == 1, "40 days left: quiet")
        world.clock.advance(11 * 86400)
        await housekeeping.warnAboutRootCRLs()
        #expect(log.lines.last == "warning the CRL of root \(root.serial) expires at \(signed.crl.nextUpdate.formatted(Date.ISO8601FormatStyle())): "
            + "run \(command); after that \(consequence) ")

        // What the gauge reports (scraped in RootCRLProcessTests): 29 days left (CRL times are whole seconds).
        try await world.authority.reloadIssuers()
        let left = world.authority.issuerSet.rootCRLs.map { $0.nextUpdate.timeIntervalSince(world.clock.now) }
        #expect(left.count == 1 && abs(left[0] - 29 * 86400) < 1, "\(left)")
    }

    @Test("a leaf's subject carries CN=<SPIFFE ID> up to 64 bytes; a longer ID still issues, with O=Vouch alone")
    func leafCommonName() async throws {
        let world = try IssuerWorld()
        let short = "spiffe://example.org/pg/app"
        let long = "spiffe://example.org/" + String(repeating: "a", count: 65 - "spiffe://example.org/".count)
        #expect(long.utf8.count == 65)
        let shortLeaf = try X509Certificate(der: try await world.enroll(short).record.der)
        #expect(shortLeaf.commonName == short && shortLeaf.spiffeID == short)
        let longLeaf = try X509Certificate(der: try await world.enroll(long).record.der)
        #expect(longLeaf.commonName == nil && longLeaf.spiffeID == long)
        let sixtyFour = String(long.dropLast())
        #expect(try X509Certificate(der: try await world.enroll(sixtyFour).record.der).commonName == sixtyFour)
    }

    static func http(_ world: IssuerWorld, _ path: String) async -> HTTPResponse {
        await CAHTTPRoutes.handler(authority: world.authority, store: world.store)(HTTPRequest(method: "GET", path: path, contentType: nil, body: []))
    }
}
