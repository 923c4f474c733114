import Foundation
import Testing
import VouchAuthority
import VouchCrypto

/// Issuer rows that their certificates contradict, as whoever can write the database could leave
/// them: `IssuerSnapshot.checkConsistency` refuses each with the row's serial and why, and accepts
/// every stage of a real rotation and rollover.
@Suite("Issuer rows against their certificates")
struct IssuerConsistencyTests {
    @Test func everyStageOfARotationAndARolloverIsConsistent() async throws {
        let world = try IssuerWorld()
        try await world.authority.start()
        let anchor = world.material.root, now = world.clock.now
        try await world.store.issuers().checkConsistency(anchorRoot: anchor, signingAt: now)
        _ = try await world.rotate()
        try await world.store.issuers().checkConsistency(anchorRoot: anchor, signingAt: now)
        let prepared = try await world.prepareRoot()
        try await world.store.issuers().checkConsistency(anchorRoot: anchor, signingAt: now)
        try await world.change(activating: prepared)
        try await world.store.issuers().checkConsistency(anchorRoot: anchor, signingAt: now)
        try await world.change(retiringRootOf: prepared)
        let retired = try await world.store.issuers()
        try retired.checkConsistency(anchorRoot: anchor, signingAt: now)
        #expect(retired.activeRoot?.serial == prepared.root.certificate.serialHex, "R2 is trusted through R1's endorsement")
    }

    /// A stored set after `root prepare` (R1, I1 retiring, I1' active, R2, I2, X, E), and a way to
    /// forge certificates as a database writer can: with a key of its own.
    struct Tampering {
        let world: IssuerWorld
        let snapshot: IssuerSnapshot
        let prepared: IssuerLifecycle.PreparedRoot
        let forger: CertificateSigner

        init() async throws {
            world = try IssuerWorld()
            try await world.authority.start()
            _ = try await world.rotate()
            prepared = try await world.prepareRoot()
            snapshot = try await world.store.issuers()
            let key = try PrivateKey(generating: .p256)
            let now = world.clock.now
            forger = try CertificateSigner(certificate: try CertificateSigner.selfSigned(key: key, template: CertificateTemplate(
                role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Test Root")],
                notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(86400))), key: key)
        }

        func index(_ kind: IssuerKind, _ state: IssuerState) -> Int {
            snapshot.issuers.firstIndex { $0.kind == kind && $0.state == state }!
        }

        func record(_ certificate: X509Certificate, like record: IssuerRecord) -> IssuerRecord {
            var forged = record
            forged.der = certificate.der
            forged.serial = certificate.serialHex
            return forged
        }

        /// The snapshot with `edit` applied; its consistency refusal.
        func refusal(_ edit: (inout [IssuerRecord]) throws -> Void, signingAt now: Date? = nil) throws -> String? {
            var issuers = snapshot.issuers
            try edit(&issuers)
            do {
                try IssuerSnapshot(generation: snapshot.generation, issuers: issuers)
                    .checkConsistency(anchorRoot: world.material.root, signingAt: now)
                return nil
            } catch let error as AuthorityError {
                return error.message
            }
        }
    }

    @Test func aRootNoTrustedRootEndorsesIsRefused() async throws {
        let t = try await Tampering()
        // A self-signed root of the writer's own, pending like a prepared one: were it trusted, the
        // CA's listener would accept client certificates it signs (an admin's ID included).
        let planted = try #require(try t.refusal { issuers in
            var root = t.record(t.forger.certificate, like: issuers[t.index(.root, .pending)])
            root.id = 99
            issuers.append(root)
        })
        #expect(planted.hasSuffix("issuer \(t.forger.certificate.serialHex): no root this CA trusts endorses it "
                                  + "(the CA directory's root is \(t.world.material.root.serialHex))"))
        // The initial root's row replaced by another root.
        let replaced = try #require(try t.refusal { issuers in
            issuers[t.index(.root, .active)] = t.record(t.forger.certificate, like: issuers[t.index(.root, .active)])
        })
        #expect(replaced.contains("is not signed by root \(t.forger.certificate.serialHex)") || replaced.contains("no root this CA trusts endorses it"))
        // An endorsement the writer signed for its own root does not count.
        let selfEndorsed = try #require(try t.refusal { issuers in
            let endorsement = t.index(.endorsement, .pending)
            issuers[endorsement] = t.record(try t.forger.sign(publicKeyOf: t.prepared.root.key, template: CertificateTemplate(
                role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Test Root")],
                notBefore: t.world.clock.now, notAfter: t.world.clock.now.addingTimeInterval(3600))), like: issuers[endorsement])
        })
        #expect(selfEndorsed.contains("is not signed by root"))
    }

    @Test func certificatesNotSignedByTheirRootOrNotTheirRowsAreRefused() async throws {
        let t = try await Tampering()
        // A root row holding a certificate that is not self-signed (an intermediate's).
        let rootIsIntermediate = try #require(try t.refusal { issuers in
            let root = t.index(.root, .pending), intermediate = t.index(.intermediate, .active)
            let id = issuers[root].id
            issuers[root] = issuers[intermediate]
            issuers[root].id = id
            issuers[root].kind = .root
            issuers[root].parentID = nil
            issuers[root].keyRef = IssuerRecord.offlineKeyRef
        })
        #expect(rootIsIntermediate.hasSuffix("this root is not self-signed"))
        // An intermediate signed by the writer's key under the real root's row.
        let forged = try #require(try t.refusal { issuers in
            let intermediate = t.index(.intermediate, .active)
            let key = try PrivateKey(generating: .p256)
            issuers[intermediate] = t.record(try t.forger.sign(publicKeyOf: key, template: CertificateTemplate(
                role: .authority(pathLength: 0), serial: try SerialNumber.random(), subject: [("CN", "Test Intermediate")],
                notBefore: t.world.clock.now, notAfter: t.world.clock.now.addingTimeInterval(3600))), like: issuers[intermediate])
        })
        #expect(forged.contains("its certificate is not signed by root \(t.world.material.root.serialHex)"))
        // A cross certificate for another key than its subject's (the pending root's certificate as X).
        let cross = try #require(try t.refusal { issuers in
            let cross = t.index(.cross, .pending)
            issuers[cross] = t.record(t.prepared.endorsement, like: issuers[cross])
        })
        #expect(cross.contains("it does not certify the name and key of issuer"))
        // DER that does not parse.
        let garbage = try #require(try t.refusal { issuers in issuers[t.index(.intermediate, .active)].der = [0x30, 0x03, 0x02, 0x01, 0x01] })
        #expect(garbage.hasSuffix("its stored certificate does not parse"))
    }

    /// The serial names `issuers/<serial>/key.pem`: a row reusing a real certificate under a serial
    /// that climbs out of the CA directory would have the CA read a file of the writer's choice.
    @Test(arguments: ["../../../../tmp/vouch-planted", "/etc", "0A", " 0a"])
    func aSerialThatIsNotTheCertificatesIsRefused(serial: String) async throws {
        let t = try await Tampering()
        let message = try #require(try t.refusal { issuers in
            let intermediate = t.index(.intermediate, .active)
            issuers[intermediate].serial = serial
            issuers[intermediate].keyRef = IssuerKeys.fileKeyRef(serial: serial)
        })
        #expect(message.contains("its row's serial is not its certificate's"))
    }

    @Test(arguments: ["file:/etc/passwd", "file:issuers/00/key.pem", "file:root_key.pem", "file:../root_key.pem", "pkcs11:x", ""])
    func aKeyReferenceOutsideItsOwnPlaceIsRefused(keyRef: String) async throws {
        let t = try await Tampering()
        let message = try #require(try t.refusal { issuers in issuers[t.index(.intermediate, .active)].keyRef = keyRef })
        #expect(message.contains("unknown key reference"))
    }

    @Test func keysTheCAMustNotHoldOrThatAreNotEncryptedAreRefused() async throws {
        let t = try await Tampering()
        let plain = try #require(try t.refusal { issuers in
            let intermediate = t.index(.intermediate, .active)
            issuers[intermediate].keyRef = IssuerRecord.databaseKeyRef
            issuers[intermediate].keyPEM = try PrivateKey(generating: .p256).pkcs8PEM(passphrase: nil)
        })
        #expect(plain.hasSuffix("its key in the database is missing or not encrypted"))
        let rootKeyHeld = try #require(try t.refusal { issuers in issuers[t.index(.root, .pending)].keyRef = IssuerRecord.initialKeyRef })
        #expect(rootKeyHeld.hasSuffix("a root names a key the CA holds"))
    }

    @Test func kindsAndStatesThatDoNotFitAreRefused() async throws {
        let t = try await Tampering()
        // The pending intermediate signing before its root is in every bundle.
        let early = try #require(try t.refusal { issuers in
            issuers[t.index(.intermediate, .active)].state = .retiring
            issuers[t.index(.intermediate, .pending)].state = .active
        })
        #expect(early.contains("an active intermediate under root \(t.prepared.root.certificate.serialHex), which is pending"))
        let orphan = try #require(try t.refusal { issuers in issuers[t.index(.intermediate, .active)].parentID = 4242 })
        #expect(orphan.hasSuffix("its parent is not a stored root"))
        let underIntermediate = try #require(try t.refusal { issuers in
            issuers[t.index(.intermediate, .active)].parentID = issuers[t.index(.intermediate, .retiring)].id
        })
        #expect(underIntermediate.hasSuffix("its parent is not a stored root"))
        let crossForRoot = try #require(try t.refusal { issuers in
            issuers[t.index(.cross, .pending)].subjectID = issuers[t.index(.root, .pending)].id
        })
        #expect(crossForRoot.hasSuffix("a cross certificate must name the intermediate it certifies"))
        let rootWithParent = try #require(try t.refusal { issuers in
            issuers[t.index(.root, .pending)].parentID = issuers[t.index(.root, .active)].id
        })
        #expect(rootWithParent.hasSuffix("a root names a parent or a subject"))
        let underRetired = try #require(try t.refusal { issuers in issuers[t.index(.root, .pending)].state = .retired })
        #expect(underRetired.contains("which is retired"))
    }

    @Test func anExpiredOrNotYetValidActiveIntermediateIsRefusedForSigningOnly() async throws {
        let t = try await Tampering()
        let active = try X509Certificate(der: t.snapshot.issuers[t.index(.intermediate, .active)].der)
        let expired = try #require(try t.refusal({ _ in }, signingAt: active.notAfter.addingTimeInterval(1)))
        #expect(expired.contains("the active intermediate is not valid now") || expired.contains("the active root is not valid now"))
        let early = try #require(try t.refusal({ _ in }, signingAt: active.notBefore.addingTimeInterval(-1)))
        #expect(early.contains("is not valid now"))
        // The commands check without a time: an operator rotates away from an expired intermediate.
        #expect(try t.refusal({ _ in }) == nil)
    }
}
