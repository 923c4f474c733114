import Foundation
import Testing
import VouchAuthority
@testable import VouchCrypto

/// What a database writer can make a running CA do through issuer rows: the CA must refuse the
/// set (keeping the one it holds), never trust, sign with or hand out what the rows claim.
@Suite("Issuer rows planted in the database")
struct IssuerTamperingServerTests {
    @Test func aPlantedRootIsNeitherTrustedByTheListenerNorHandedToAgents() async throws {
        let world = try IssuerWorld()
        try await world.authority.start()
        let held = world.authority.issuerSet
        let key = try PrivateKey(generating: .p256), now = world.clock.now
        let planted = try CertificateSigner.selfSigned(key: key, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Test Root")],
            notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(86400)))
        let snapshot = try await world.store.issuers()
        _ = try await world.store.changeIssuers(IssuerChange(inserts: [.init(IssuerRecord(
            kind: .root, state: .pending, serial: planted.serialHex, der: planted.der, notBefore: planted.notBefore,
            notAfter: planted.notAfter, keyRef: IssuerRecord.offlineKeyRef, createdAt: now))]),
            expectedGeneration: snapshot.generation, audit: [])
        let refusal = await #expect(throws: AuthorityError.self) { try await world.authority.reloadIssuers() }
        #expect(refusal?.message.hasSuffix("issuer \(planted.serialHex): no root this CA trusts endorses it "
                                           + "(the CA directory's root is \(world.material.root.serialHex))") == true)
        #expect(!world.authority.issuerSet.rootsDER.contains(planted.der), "the listener's client roots and every TrustBundle")
        #expect(world.authority.issuerSet.generation == held.generation)
        // The held set goes on signing, and a later reload refuses the same rows again.
        let issued = try await world.enroll("spiffe://example.org/svc/web")
        #expect(issued.roots == [world.material.root.der])
        #expect(try X509Certificate(der: issued.record.der).isSigned(by: world.material.intermediate))
        await #expect(throws: AuthorityError.self) { try await world.authority.reloadIssuers() }
    }

    /// A row reusing the active intermediate's certificate under a serial that climbs out of the
    /// CA directory: its key reference `file:issuers/<serial>/key.pem` then names a file of the
    /// writer's choice. The set is refused before any key is read.
    @Test func aSerialClimbingOutOfTheCADirectoryIsNotFollowed() async throws {
        let world = try IssuerWorld()
        try await world.authority.start()
        let outside = try world.temporaryDirectory()
        let serial = String(repeating: "../", count: 12) + outside.dropFirst() + "/x"
        try FileManager.default.createDirectory(atPath: outside + "/x", withIntermediateDirectories: true)
        try world.material.signer.key.pkcs8PEM(passphrase: IssuerWorld.passphrase).write(toFile: outside + "/x/key.pem", atomically: true, encoding: .utf8)
        let snapshot = try await world.store.issuers()
        var copy = snapshot.activeIntermediate!
        copy.serial = serial
        copy.keyRef = IssuerKeys.fileKeyRef(serial: serial)
        _ = try await world.store.changeIssuers(IssuerChange(inserts: [.init(copy, parent: .id(snapshot.activeRoot!.id))],
                                                             updates: [.init(id: snapshot.activeIntermediate!.id, state: .retiring)]),
                                                expectedGeneration: snapshot.generation, audit: [])
        let refusal = await #expect(throws: AuthorityError.self) { try await world.authority.reloadIssuers() }
        #expect(refusal?.message.hasSuffix("its row's serial is not its certificate's (\(world.material.intermediate.serialHex))") == true)
        #expect(world.authority.issuerSet.active.serial != serial, "signing with a key read from \(outside)/x/key.pem")
        #expect(world.authority.issuerSet.generation == snapshot.generation)
    }
}
