import Foundation
import Testing
@testable import VouchAPI
import VouchAuthority
import VouchCrypto
@testable import VouchHTTP

/// The authority with several issuers: it signs with the active intermediate, follows the store's
/// generation without a restart, and keeps serving CRLs and OCSP answers for retiring ones.
@Suite("Issuer switch")
struct IssuerSwitchTests {
    @Test func afterRotationLeavesComeFromTheNewIntermediateAndOldLeavesStillRenew() async throws {
        let world = try IssuerWorld()
        let old = try await world.enroll("spiffe://example.org/svc/old")
        let initial = try #require(world.authority.issuerSet.record(serial: world.material.intermediate.serialHex))
        #expect(old.record.issuerID == initial.id)
        var updates = world.authority.issuerUpdates().makeAsyncIterator()
        #expect(await updates.next()?.generation == 1)

        let rotated = try await world.rotate()
        #expect(try await world.authority.reloadIssuers())
        #expect(await updates.next()?.active.serial == rotated.certificate.serialHex)
        #expect(try await world.authority.reloadIssuers() == false)

        let fresh = try await world.enroll("spiffe://example.org/svc/new")
        let leaf = try X509Certificate(der: fresh.record.der)
        #expect(leaf.isSigned(by: rotated.certificate))
        #expect(fresh.record.issuerID == world.authority.issuerSet.active.record.id)
        #expect(fresh.chain == [rotated.certificate.der])
        #expect(fresh.roots == [world.material.root.der])

        // A certificate of the retiring intermediate renews, from the new one.
        let renewed = try await world.renew(old.record)
        #expect(try X509Certificate(der: renewed.record.der).isSigned(by: rotated.certificate))
        #expect(renewed.chain == [rotated.certificate.der])
    }

    @Test func aRetiringIntermediateStillSignsItsCRLAndAnswersOCSP() async throws {
        let world = try IssuerWorld()
        let old = try await world.enroll("spiffe://example.org/svc/old")
        let before = try await world.authority.currentCRL()
        _ = try await world.rotate()
        try await world.authority.reloadIssuers()
        let fresh = try await world.enroll("spiffe://example.org/svc/new")
        _ = try await world.authority.revoke(serial: old.record.serial, reason: 1, caller: IssuerWorld.admin)
        _ = try await world.authority.revoke(serial: fresh.record.serial, reason: 4, caller: IssuerWorld.admin)

        let oldIssuer = world.material.intermediate, newIssuer = world.authority.issuerSet.active.certificate
        let retiring = try await world.authority.currentCRL(issuer: oldIssuer.serialHex)
        let active = try await world.authority.currentCRL()
        #expect(retiring.issuer == oldIssuer.serialHex && active.issuer == newIssuer.serialHex)
        let retiringCRL = try CertificateRevocationList(der: retiring.der), activeCRL = try CertificateRevocationList(der: active.der)
        #expect(retiringCRL.isSigned(by: oldIssuer) && activeCRL.isSigned(by: newIssuer))
        #expect(retiringCRL.entries.map { SerialNumber.hex($0.serial) } == [old.record.serial])
        #expect(activeCRL.entries.map { SerialNumber.hex($0.serial) } == [fresh.record.serial])
        // `/crl` switched issuer without its number going down.
        #expect(active.number > before.number)
        // WatchRevocations events and admin listings name each certificate's issuer.
        let events = try await world.authority.revocations(afterSequence: 0)
        #expect(events.map { world.authority.issuerSerial(of: $0) } == [oldIssuer.serialHex, newIssuer.serialHex])
        #expect(world.authority.issuerSerial(of: try await world.authority.certificate(serial: fresh.record.serial)) == newIssuer.serialHex)

        let dir = try world.temporaryDirectory()
        try oldIssuer.pem.write(toFile: dir + "/old.pem", atomically: true, encoding: .utf8)
        try newIssuer.pem.write(toFile: dir + "/new.pem", atomically: true, encoding: .utf8)
        try world.material.root.pem.write(toFile: dir + "/root.pem", atomically: true, encoding: .utf8)
        let old1 = try await world.ocsp(issuerPEM: dir + "/old.pem", serial: old.record.serial, in: dir)
        #expect(old1.contains("revoked") && old1.contains("keyCompromise") && old1.contains("Response verify OK"), "\(old1)")
        let new1 = try await world.ocsp(issuerPEM: dir + "/new.pem", serial: fresh.record.serial, in: dir)
        #expect(new1.contains("revoked") && new1.contains("superseded") && new1.contains("Response verify OK"), "\(new1)")
        // A serial of one intermediate asked of the other is not its certificate.
        let crossed = try await world.ocsp(issuerPEM: dir + "/new.pem", serial: old.record.serial, in: dir)
        #expect(crossed.contains(": unknown"), "\(crossed)")
        // An issuer the CA does not have.
        let stranger = try TestCA.material(now: world.clock.now)
        try stranger.intermediate.pem.write(toFile: dir + "/stranger.pem", atomically: true, encoding: .utf8)
        let foreign = try await world.ocsp(issuerPEM: dir + "/stranger.pem", serial: old.record.serial, in: dir, verify: false)
        #expect(foreign.contains("unauthorized"), "\(foreign)")
    }

    @Test func chainIsNewIntermediateThenCrossUntilRetireAndCrossOnlyForUnconfirmedRenewers() async throws {
        let world = try IssuerWorld()
        let old = try await world.enroll("spiffe://example.org/svc/old")
        let prepared = try await world.prepareRoot()
        #expect(try await world.authority.reloadIssuers())
        // Prepared: both roots handed out; the old intermediate still signs.
        #expect(world.authority.rootsDER == [world.material.root.der, prepared.root.certificate.der])
        #expect(world.authority.chainDER == [world.material.intermediate.der])

        try await world.change(activating: prepared)
        #expect(try await world.authority.reloadIssuers())
        let fresh = try await world.enroll("spiffe://example.org/svc/new")
        #expect(fresh.chain == [prepared.intermediate.certificate.der, prepared.cross.der])
        #expect(try X509Certificate(der: fresh.record.der).isSigned(by: prepared.intermediate.certificate))
        #expect(world.authority.issuerSet.poolIntermediatesDER.contains(prepared.cross.der))
        // The old intermediate's CRL is still served while it retires; the cross certificate's serial names I2's.
        #expect(try await world.authority.currentCRL(issuer: world.material.intermediate.serialHex).issuer == world.material.intermediate.serialHex)
        #expect(try await world.authority.currentCRL(issuer: prepared.cross.serialHex).issuer == prepared.intermediate.certificate.serialHex)
        // A renewer that never confirmed the new bundle gets X alone (it chains to the root it holds);
        // one that confirmed the prepare generation gets [I2, X].
        let unconfirmed = try await world.renew(old.record)
        #expect(unconfirmed.chain == [prepared.cross.der])
        let prepareGeneration = try #require(world.authority.issuerSet.record(serial: prepared.root.certificate.serialHex)).createdGeneration
        try await world.authority.recordTrustConfirmation(caller: IssuerWorld.caller(unconfirmed.record), generation: prepareGeneration,
                                                         bundleSHA256: Array(repeating: 1, count: 32))
        let confirmed = try await world.renew(unconfirmed.record)
        #expect(confirmed.chain == [prepared.intermediate.certificate.der, prepared.cross.der])

        try await world.change(retiringRootOf: prepared)
        #expect(try await world.authority.reloadIssuers())
        #expect(world.authority.rootsDER == [prepared.root.certificate.der])
        #expect(world.authority.chainDER == [prepared.intermediate.certificate.der])
        #expect(try await world.renew(confirmed.record).chain == [prepared.intermediate.certificate.der])
        #expect(world.authority.issuerSet.endorsementsDER == [prepared.endorsement.der])
        let routes = CAHTTPRoutes.handler(authority: world.authority, store: world.store)
        #expect(await routes(.get("/crl/\(world.material.intermediate.serialHex)")).status == 410)
    }

    @Test func aReplicaWithoutTheNewKeyKeepsSigningWithThePreviousIssuer() async throws {
        let world = try IssuerWorld()
        let replica = try world.replica()
        try await replica.start()
        let rotated = try await world.rotate(keyInDirectory: true)
        #expect(try await replica.reloadIssuers())
        let issuer = rotated.certificate.serialHex, previous = world.material.intermediate.serialHex
        #expect(replica.signingIssuerWarning?.hasPrefix("cannot load the key of issuer \(issuer): cannot read ") == true)
        #expect(replica.signingIssuerWarning?.hasSuffix("; signing with \(previous)") == true)
        #expect(replica.issuerSet.generation == 2)
        let token = try await world.token("spiffe://example.org/svc/web")
        let key = try PrivateKey(generating: .p256)
        let issued = try await replica.enroll(token: token, csr: try CertificateSigningRequest.create(key: key, subjectAltNames: SubjectAltNames()).der,
                                              ttlSeconds: 0, caller: Caller(credential: .none, peer: "local"))
        #expect(try X509Certificate(der: issued.record.der).isSigned(by: world.material.intermediate))
        #expect(issued.chain == [world.material.intermediate.der])
        await #expect(throws: AuthorityError.self) { try await replica.currentCRL(issuer: issuer) }

        // The key file arrives (the operator copied it): the same generation is read again and signs.
        try world.writeKeyFile(rotated, into: replica.material.files!)
        #expect(try await replica.reloadIssuers())
        #expect(replica.signingIssuerWarning == nil)
        #expect(replica.issuerSet.active.serial == issuer)
        #expect(try await replica.reloadIssuers() == false)
    }

    @Test func aCADirectoryOfAnotherCAIsRefusedItsDatabase() async throws {
        let world = try IssuerWorld()
        try await world.authority.start()
        let other = try IssuerWorld(store: world.store)
        let refusal = await #expect(throws: AuthorityError.self) { try await other.authority.start() }
        #expect(refusal?.message.hasPrefix("the database belongs to another CA: its first intermediate is "
            + "\(world.material.intermediate.serialHex), not \(other.material.intermediate.serialHex)") == true, "\(String(describing: refusal))")
        #expect(!other.authority.issuerSet.isAdopted)
    }

    @Test func crlRoutesServeEachIssuersCRLVerifiedByOpenSSL() async throws {
        let world = try IssuerWorld()
        let old = try await world.enroll("spiffe://example.org/svc/old")
        _ = try await world.authority.revoke(serial: old.record.serial, reason: 1, caller: IssuerWorld.admin)
        let rotated = try await world.rotate()
        try await world.authority.reloadIssuers()
        let routes = CAHTTPRoutes.handler(authority: world.authority, store: world.store)
        let dir = try world.temporaryDirectory()
        try world.material.intermediate.pem.write(toFile: dir + "/old.pem", atomically: true, encoding: .utf8)
        try rotated.certificate.pem.write(toFile: dir + "/new.pem", atomically: true, encoding: .utf8)

        for (path, issuerFile, listsOld) in [("/crl/\(world.material.intermediate.serialHex)", "old.pem", true),
                                             ("/crl/\(rotated.certificate.serialHex)", "new.pem", false),
                                             ("/crl", "new.pem", false)] {
            let response = await routes(.get(path))
            #expect(response.status == 200 && response.contentType == "application/pkix-crl", "\(path)")
            try Data(response.body).write(to: URL(fileURLWithPath: dir + "/crl.der"))
            let text = try openssl(["crl", "-inform", "DER", "-in", dir + "/crl.der", "-noout", "-text", "-CAfile", dir + "/" + issuerFile])
            #expect(text.stderr.contains("verify OK"), "\(path): \(text.stderr)")
            #expect(text.stdout.contains(old.record.serial.uppercased()) == listsOld, "\(path): \(text.stdout)")
        }
        let all = await routes(.get("/crl/all.pem"))
        let pem = String(decoding: all.body, as: UTF8.self)
        #expect(all.status == 200 && pem.components(separatedBy: "-----BEGIN X509 CRL-----").count == 3, "\(pem)")
        #expect(await routes(.get("/crl/0123456789abcdef")).status == 404)
        #expect(await routes(.get("/crl/not-hex")).status == 404)
    }

    @Test(arguments: [("http://ca.internal:8080/crl", true), ("http://cdn.example.org/vouch.crl", false)])
    func theCRLDistributionPointNamesTheSigningIntermediateOnVouchsOwnRoute(url: String, perIssuer: Bool) async throws {
        let harness = try AuthorityHarness { $0.crlDistributionPoint = url }
        let issued = try await harness.enroll(try await harness.token("spiffe://example.org/svc/web"))
        let dir = try IssuerWorld().temporaryDirectory()
        try X509Certificate(der: issued.record.der).pem.write(toFile: dir + "/leaf.pem", atomically: true, encoding: .utf8)
        let text = try openssl(["x509", "-in", dir + "/leaf.pem", "-noout", "-ext", "crlDistributionPoints"]).stdout
        let expected = perIssuer ? url + "/" + harness.authority.issuerSet.active.serial : url
        #expect(text.contains("URI:\(expected)\n"), "\(text)")
    }

    @Test func auditCheckpointsAreSignedByTheActiveIssuerAndVerifyAcrossARotation() async throws {
        let world = try IssuerWorld()
        try await world.authority.start()
        let checkpointer = AuditCheckpointer(store: world.store, authority: world.authority)
        let first = try await checkpointer.checkpoint()
        #expect(first.signer == world.material.intermediate.serialHex)
        let rotated = try await world.rotate()
        try await world.authority.reloadIssuers()
        _ = try await world.token("spiffe://example.org/svc/later")
        let second = try await checkpointer.checkpoint()
        #expect(second.signer == rotated.certificate.serialHex)

        let chain = try await world.store.auditChain()
        let signers = AuditCheckpoint.trustedSigners(root: world.material.root, intermediate: world.material.intermediate,
                                                     issuers: try await world.store.issuers().issuers)
        let verdict = AuditChain.verify(chain.rows, head: chain.head, checkpoints: try await world.store.auditCheckpoints(),
                                        intermediates: signers)
        guard case .intact(_, _, let checked) = verdict else { Issue.record("\(verdict)"); return }
        #expect(checked == 2)
        // An intermediate planted in the table by someone without a CA key does not vouch for checkpoints.
        let stranger = try TestCA.material(now: world.clock.now)
        var planted = try await world.store.issuers().issuers
        planted.append(IssuerRecord(id: 99, kind: .intermediate, state: .retiring, parentID: 1, serial: stranger.intermediate.serialHex,
                                    der: stranger.intermediate.der, notBefore: world.clock.now, notAfter: world.clock.now,
                                    keyRef: "offline", createdAt: world.clock.now))
        let trusted = AuditCheckpoint.trustedSigners(root: world.material.root, intermediate: world.material.intermediate, issuers: planted)
        #expect(!trusted.contains { $0.der == stranger.intermediate.der })
    }
}

extension HTTPRequest {
    static func get(_ path: String) -> HTTPRequest { HTTPRequest(method: "GET", path: path, contentType: nil, body: []) }
}

/// An authority over an in-memory store whose CA directory is a temporary one, with the root key
/// at hand to make new issuers as `vouch ca intermediate rotate` and `vouch ca root prepare` do.
struct IssuerWorld {
    static let admin = Caller(credential: .certificate(spiffeID: "spiffe://example.org/vouch/admin", serial: "01"), peer: "local")
    static let passphrase = "issuer test passphrase"
    /// Today: OpenSSL checks the certificates against its own clock.
    let clock = TestClock(Date())
    let store: any AuthorityStore
    let material: CAMaterial
    let rootSigner: CertificateSigner
    let authority: CertificateAuthority

    init(store: any AuthorityStore = InMemoryAuthorityStore()) throws {
        self.store = store
        let now = clock.now
        let rootKey = try PrivateKey(generating: .p256), intermediateKey = try PrivateKey(generating: .p256)
        let root = try CertificateSigner.selfSigned(key: rootKey, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Test Root")],
            notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(10 * 365 * 86400)))
        rootSigner = try CertificateSigner(certificate: root, key: rootKey)
        let intermediate = try rootSigner.sign(publicKeyOf: intermediateKey, template: CertificateTemplate(
            role: .authority(pathLength: 0), serial: try SerialNumber.random(), subject: [("CN", "Test Intermediate")],
            notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(5 * 365 * 86400)))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-issuers-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        material = CAMaterial(settings: CASettings(trustDomain: "example.org", keysEncrypted: true, createdAt: now), root: root,
                              intermediate: intermediate, signer: try CertificateSigner(certificate: intermediate, key: intermediateKey),
                              files: CAFiles(directory: directory), passphrase: Self.passphrase)
        let clock = self.clock
        authority = CertificateAuthority(store: store, material: material, policy: IssuancePolicy(trustDomain: "example.org"),
                                         clock: { clock.now })
    }

    /// Another replica, with its own (empty) CA directory, on the same store or its own connection to the database.
    func replica(store: (any AuthorityStore)? = nil, passphrase: String? = Self.passphrase) throws -> CertificateAuthority {
        let directory = try temporaryDirectory()
        let own = CAMaterial(settings: material.settings, root: material.root, intermediate: material.intermediate, signer: material.signer,
                             files: CAFiles(directory: directory), passphrase: passphrase)
        let clock = self.clock
        return CertificateAuthority(store: store ?? self.store, material: own, policy: IssuancePolicy(trustDomain: "example.org"),
                                    clock: { clock.now })
    }

    func temporaryDirectory() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-issuers-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    func token(_ spiffeID: String) async throws -> String {
        try await authority.createToken(spiffeID: spiffeID, dnsNames: [], ipAddresses: [], ttlSeconds: 900, uses: 1, caller: Self.admin).token.text
    }

    func enroll(_ spiffeID: String) async throws -> IssuedCertificate {
        let csr = try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der
        return try await authority.enroll(token: try await token(spiffeID), csr: csr, ttlSeconds: 0, caller: Caller(credential: .none, peer: "local"))
    }

    func renew(_ record: CertificateRecord) async throws -> IssuedCertificate {
        let csr = try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der
        return try await authority.renew(csr: csr, ttlSeconds: 0, caller: Self.caller(record))
    }

    static func caller(_ record: CertificateRecord) -> Caller {
        Caller(credential: .certificate(spiffeID: record.spiffeID, serial: record.serial), peer: "local")
    }

    /// A new intermediate under the active root, active at once; the old one retiring. Its key is
    /// stored encrypted in the database, or with `keyInDirectory` in this CA directory only.
    func rotate(keyInDirectory: Bool = false) async throws -> IssuerLifecycle.NewIssuer {
        let snapshot = try await store.issuers()
        let rotated = try IssuerLifecycle.intermediate(under: rootSigner, now: clock.now)
        let serial = rotated.certificate.serialHex
        if keyInDirectory { try writeKeyFile(rotated, into: material.files!) }
        let record = IssuerRecord(kind: .intermediate, state: .active, serial: serial, der: rotated.certificate.der,
                                  notBefore: rotated.certificate.notBefore, notAfter: rotated.certificate.notAfter,
                                  keyRef: keyInDirectory ? IssuerKeys.fileKeyRef(serial: serial) : IssuerRecord.databaseKeyRef,
                                  keyPEM: keyInDirectory ? nil : try rotated.key.pkcs8PEM(passphrase: Self.passphrase), createdAt: clock.now)
        _ = try await store.changeIssuers(IssuerChange(
            inserts: [.init(record, parent: .id(snapshot.activeRoot!.id))],
            updates: [.init(id: snapshot.activeIntermediate!.id, state: .retiring)]), expectedGeneration: snapshot.generation, audit: [])
        return rotated
    }

    func writeKeyFile(_ issuer: IssuerLifecycle.NewIssuer, into files: CAFiles) throws {
        let path = files.directory.appendingPathComponent(IssuerKeys.keyPath(serial: issuer.certificate.serialHex))
        try FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
        try issuer.key.pkcs8PEM(passphrase: Self.passphrase).write(to: path, atomically: true, encoding: .utf8)
    }

    /// R2, I2, X and E, all pending.
    func prepareRoot() async throws -> IssuerLifecycle.PreparedRoot {
        let snapshot = try await store.issuers()
        let prepared = try IssuerLifecycle.prepareRoot(oldRoot: rootSigner, now: clock.now)
        func record(_ kind: IssuerKind, _ certificate: X509Certificate, keyPEM: String? = nil) -> IssuerRecord {
            IssuerRecord(kind: kind, state: .pending, serial: certificate.serialHex, der: certificate.der, notBefore: certificate.notBefore,
                         notAfter: certificate.notAfter, keyRef: keyPEM == nil ? IssuerRecord.offlineKeyRef : IssuerRecord.databaseKeyRef,
                         keyPEM: keyPEM, createdAt: clock.now)
        }
        let oldRoot = snapshot.activeRoot!.id
        _ = try await store.changeIssuers(IssuerChange(inserts: [
            .init(record(.root, prepared.root.certificate)),
            .init(record(.intermediate, prepared.intermediate.certificate, keyPEM: try prepared.intermediate.key.pkcs8PEM(passphrase: Self.passphrase)),
                  parent: .inserted(0)),
            .init(record(.cross, prepared.cross), parent: .id(oldRoot), subject: .inserted(1)),
            .init(record(.endorsement, prepared.endorsement), parent: .id(oldRoot), subject: .inserted(0)),
        ]), expectedGeneration: snapshot.generation, audit: [])
        return prepared
    }

    /// `root activate`: the new root, its intermediate and X active; the old root and its intermediates retiring.
    func change(activating prepared: IssuerLifecycle.PreparedRoot) async throws {
        let snapshot = try await store.issuers()
        let id = { (certificate: X509Certificate) in snapshot.issuer(serial: certificate.serialHex)!.id }
        var updates: [IssuerChange.StateUpdate] = [.init(id: snapshot.activeRoot!.id, state: .retiring),
                                                   .init(id: snapshot.activeIntermediate!.id, state: .retiring)]
        for certificate in [prepared.root.certificate, prepared.intermediate.certificate, prepared.cross, prepared.endorsement] {
            updates.append(.init(id: id(certificate), state: .active))
        }
        _ = try await store.changeIssuers(IssuerChange(updates: updates), expectedGeneration: snapshot.generation, audit: [])
    }

    /// `root retire`: the old root, its intermediates and X retired.
    func change(retiringRootOf prepared: IssuerLifecycle.PreparedRoot) async throws {
        let snapshot = try await store.issuers()
        let retired = snapshot.issuers.filter { $0.state == .retiring || $0.serial == prepared.cross.serialHex }
        _ = try await store.changeIssuers(IssuerChange(updates: retired.map { .init(id: $0.id, state: .retired) }),
                                          expectedGeneration: snapshot.generation, audit: [])
    }

    /// `openssl ocsp` with a request made for `issuerPEM`, answered by the authority in process.
    func ocsp(issuerPEM: String, serial: String, in dir: String, verify: Bool = true) async throws -> String {
        let request = try openssl(["ocsp", "-issuer", issuerPEM, "-serial", "0x" + serial, "-no_nonce", "-reqout", dir + "/request.der"])
        #expect(request.status == 0, "\(request.stderr)")
        let response = await authority.ocspResponse(to: Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/request.der"))))
        try Data(response).write(to: URL(fileURLWithPath: dir + "/response.der"))
        let check = try openssl(["ocsp", "-issuer", issuerPEM, "-serial", "0x" + serial, "-respin", dir + "/response.der", "-resp_text"]
                                + (verify ? ["-CAfile", dir + "/root.pem"] : ["-noverify"]))
        return check.stdout + check.stderr
    }
}
