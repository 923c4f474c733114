import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import Testing
import VouchAPI
@testable import VouchAgent
import VouchCrypto
import VouchTLS
import X509

/// The agent's side of a root rollover, in process: a root is added only when a root the agent
/// already trusts endorsed it; every file is written together, the listener trusts the new root
/// for new handshakes at once, and a restart proves the root again from --ca-bundle.
@Suite("Agent trust bundle updates")
struct AgentTrustUpdateTests {
    @Test func aRootEndorsedByAHeldRootIsAddedAtomicallyAndTheListenerReloads() async throws {
        let world = try RolloverWorld()
        let listener = try await AgentListener(world)
        defer { listener.stop() }
        // A peer under the new root and intermediate, sending only its leaf (as every Vouch client does).
        let status = try listener.peer(under: world.i2)
        await #expect(throws: (any Error).self, "the agent does not trust R2 yet") { _ = try await status() }

        await world.apply(world.prepared, reload: { _ = try listener.tls.reload() })
        #expect(try world.serials(world.files.bundle) == [world.r1.certificate.serialHex, world.r2.certificate.serialHex])
        #expect(try world.serials(world.files.endorsements) == [world.endorsement.serialHex])
        #expect(try world.serials(world.files.caIntermediates) == [world.i1, world.i2].map(\.certificate.serialHex) + [world.cross.serialHex])
        #expect(try world.serials(world.files.chain) == [world.i1.certificate.serialHex], "the agent's own chain is unchanged")
        #expect(world.log.lines.contains { $0.hasPrefix("info trust bundle updated") && $0.contains("added=\(world.r2.certificate.serialHex)") })

        // No restart: the same listener now accepts the peer, which is chained through I2 from ca_intermediates.pem.
        let answer = try await status()
        let bundleSHA256 = sha256(Array(try #require(FileManager.default.contents(atPath: world.files.bundle))))
        #expect(answer.trustGeneration == 7)
        #expect(answer.rootSerials == [world.r1.certificate.serialHex, world.r2.certificate.serialHex])
        #expect(Array(answer.bundleSha256) == bundleSHA256)
        let confirmations = world.source.confirmations.withLock { $0 }
        #expect(confirmations.map(\.generation) == [7] && confirmations.first?.sha256 == bundleSHA256, "confirmed to the CA")
    }

    @Test func aPeerSendingOnlyItsLeafFromANewIntermediateIsAccepted() async throws {
        let world = try RolloverWorld()
        let listener = try await AgentListener(world)
        defer { listener.stop() }
        // `intermediate rotate`: a new intermediate under the same root; the peer's chain.pem would
        // hold it, but Vouch clients send only their leaf.
        let key = try PrivateKey(generating: .p256)
        let rotated = try CertificateSigner(certificate: world.r1.sign(publicKeyOf: key, template: RolloverWorld.authority(
            "Vouch Intermediate CA 2026", pathLength: 0)), key: key)
        let status = try listener.peer(under: rotated)
        await #expect(throws: (any Error).self, "the listener knows only the agent's own intermediate") { _ = try await status() }
        await world.apply(world.bundle(3, roots: [world.r1.certificate], intermediates: [world.i1.certificate, rotated.certificate]),
                          reload: { _ = try listener.tls.reload() })
        #expect(try await status().trustGeneration == 3)
    }

    @Test func aBundleUpdateWithoutProofIsRefusedAndLogged() async throws {
        let world = try RolloverWorld()
        // Even with the intermediate in bundle.pem and --ca-bundle (an operator's mistake), its
        // stolen key cannot endorse a root: only self-signed roots do.
        for path in [world.files.bundle, world.configuredBundle] {
            try pemBundle([world.r1.certificate, world.i1.certificate]).write(toFile: path, atomically: true, encoding: .utf8)
        }
        // An attacker's root named like the real new one, and ways to pretend it is vouched for.
        let attackerKey = try PrivateKey(generating: .p256)
        let attacker = try CertificateSigner(certificate: CertificateSigner.selfSigned(
            key: attackerKey, template: RolloverWorld.authority("Vouch Root CA 2", pathLength: 1)), key: attackerKey)
        let expiredEndorsement = try world.r1.sign(publicKeyOf: attackerKey, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Vouch Root CA 2")],
            notBefore: Date().addingTimeInterval(-7200), notAfter: Date().addingTimeInterval(-3600)))
        let attempts: [(what: String, update: TrustBundleUpdate)] = [
            ("a root merely offered", world.bundle(8, roots: [world.r1.certificate, world.i1.certificate, attacker.certificate],
                                                   intermediates: [world.i1.certificate])),
            ("endorsed with a stolen intermediate key", world.bundle(8, roots: [world.i1.certificate, attacker.certificate],
                                                                     intermediates: [world.i1.certificate],
                endorsements: [try world.i1.sign(publicKeyOf: attackerKey, template: RolloverWorld.authority("Vouch Root CA 2", pathLength: 1))])),
            ("endorsed by itself", world.bundle(8, roots: [world.r1.certificate, attacker.certificate],
                endorsements: [try attacker.sign(publicKeyOf: attackerKey, template: RolloverWorld.authority("Vouch Root CA 2", pathLength: 1))])),
            ("endorsed by the held root, but expired", world.bundle(8, roots: [world.r1.certificate, attacker.certificate],
                endorsements: [expiredEndorsement])),
        ]
        let before = try world.filesOnDisk()
        let line = "notice refused a trust bundle update: root Vouch Root CA 2 \(attacker.certificate.serialHex) "
            + "is not vouched for by a root the agent trusts generation=8"
        for (index, attempt) in attempts.enumerated() {
            await world.apply(attempt.update)
            #expect(try world.filesOnDisk() == before, "\(attempt.what): every file byte-identical")
            #expect(world.log.lines.filter { $0 == line }.count == index + 1, "\(attempt.what): \(world.log.lines)")
            #expect(world.follower.refusedCount == index + 1)
        }
        #expect(world.state.current.trustGeneration == 0)
        #expect(world.source.confirmations.withLock { $0.isEmpty }, "nothing refused is confirmed")

        // A bundle with no root, oversized or unparseable ones: refused as well, nothing written.
        for update in [world.bundle(8, roots: []), TrustBundleUpdate(generation: 8, roots: [[0x30, 0x03, 0x02, 0x01, 0x01]]),
                       world.bundle(8, roots: Array(repeating: world.r1.certificate, count: 17))] {
            await world.apply(update)
        }
        #expect(try world.filesOnDisk() == before)
        #expect(world.follower.refusedCount == attempts.count + 3)
    }

    @Test func neverDropsTheRootThatAnchorsItsOwnCertificate() async throws {
        let world = try RolloverWorld()
        await world.apply(world.prepared)
        // Retired while the agent's certificate still chains only to R1 (a forced retire): R1 stays
        // and the keeper is asked to renew.
        await world.apply(world.retired)
        #expect(try world.serials(world.files.bundle) == [world.r1.certificate.serialHex, world.r2.certificate.serialHex])
        #expect(world.renewRequests.value == 1)
        await world.apply(world.retired)
        #expect(world.renewRequests.value == 1, "asked once: a CA still signing under R1 cannot start a renewal loop")
        #expect(world.log.lines.contains { $0.contains("keeping a root the CA dropped") && $0.contains(world.r1.certificate.serialHex) })
        #expect(world.state.current.trustGeneration == 9)

        // Renewed under R2, the CA sends [I2, X]: after an update chain.pem lists I2 first (newest root).
        try world.renewUnderTheNewRoot()
        let applying = Task { try await world.follower.applyForever(reloadListener: {}) }
        defer { applying.cancel() }
        world.follower.identityChanged()
        try await waitUntil { (try? world.serials(world.files.bundle)) == [world.r2.certificate.serialHex] }
        // R1 left once the agent's own certificate no longer needed it; X went with it.
        #expect(try world.serials(world.files.chain) == [world.i2.certificate.serialHex])
        #expect(try world.serials(world.files.caIntermediates) == [world.i2.certificate.serialHex])
        #expect(try world.serials(world.files.endorsements) == [world.endorsement.serialHex], "E stays: a restart needs it")
    }

    @Test func askedToRenewEarlyTheKeeperRenewsAtOnce() async throws {
        let agent = try await KeeperHarness()
        let rotation = try await agent.startRotating()
        defer { rotation.cancel() }
        let due = try #require(agent.clock.deadlines.first)
        agent.keeper.wake.request()
        try await agent.waitFor { agent.state.current.rotations == 1 }
        #expect(agent.clock.now < due, "renewed without waiting for the scheduled time")
    }

    @Test func aNewEnrollmentTakesTheLastBundleAgain() async throws {
        let world = try RolloverWorld()
        await world.apply(world.prepared)
        let applying = Task { try await world.follower.applyForever(reloadListener: {}) }
        defer { applying.cancel() }
        // Enrolling with a new token writes bundle.pem from --ca-bundle (R1 alone).
        try world.r1.certificate.pem.write(toFile: world.files.bundle, atomically: true, encoding: .utf8)
        world.follower.identityChanged()
        try await waitUntil { (try? world.serials(world.files.bundle).count) == 2 }
        try await waitUntil { world.state.current.rootSerials.count == 2 }
    }

    @Test func chainPemIsRecomputedAndDropsTheCrossCertificateAtRetire() async throws {
        let world = try RolloverWorld()
        await world.apply(world.prepared)
        try world.renewUnderTheNewRoot()
        try pemBundle([world.cross, world.i2.certificate]).write(toFile: world.files.chain, atomically: true, encoding: .utf8)
        await world.apply(world.bundle(8, roots: [world.r1.certificate, world.r2.certificate],
                                       intermediates: [world.i1.certificate, world.i2.certificate, world.cross], endorsements: [world.endorsement]))
        #expect(try world.serials(world.files.chain) == [world.i2.certificate.serialHex, world.cross.serialHex], "newest root first")
        await world.apply(world.retired)
        #expect(try world.serials(world.files.chain) == [world.i2.certificate.serialHex])
        #expect(try world.serials(world.files.bundle) == [world.r2.certificate.serialHex])
    }

    @Test func restartKeepsAnEndorsedRootAndRefusesAnUnprovenOne() async throws {
        // E expires after 10 minutes; the agent restarts after 20, holding only R2 by then.
        let world = try RolloverWorld(endorsementLifetime: 600)
        await world.apply(world.prepared)
        try world.renewUnderTheNewRoot()
        await world.apply(world.retired)
        #expect(try world.serials(world.files.bundle) == [world.r2.certificate.serialHex])
        let later = Date().addingTimeInterval(1200)
        try await world.trust.verifyOnDisk(world.files.load(), now: later)

        // A root planted in bundle.pem, with an "endorsement" from the agent's own intermediate: refused.
        let plantedKey = try PrivateKey(generating: .p256)
        let planted = try CertificateSigner.selfSigned(key: plantedKey, template: RolloverWorld.authority("Vouch Root CA 3", pathLength: 1))
        let byIntermediate = try world.i2.sign(publicKeyOf: plantedKey, template: RolloverWorld.authority("Vouch Root CA 3", pathLength: 1))
        try (world.r2.certificate.pem + planted.pem).write(toFile: world.files.bundle, atomically: true, encoding: .utf8)
        try (world.endorsement.pem + byIntermediate.pem).write(toFile: world.files.endorsements, atomically: true, encoding: .utf8)
        let refusal = await #expect(throws: IdentityRejected.self) { try await world.trust.verifyOnDisk(world.files.load(), now: later) }
        #expect(refusal?.description == "bundle.pem holds a root (Vouch Root CA 3) that is not in --ca-bundle and that no root in it endorsed")
    }

    @Test func callsToTheCAUseTheHeldBundleOnceTheAgentHoldsAnIdentity() throws {
        let world = try RolloverWorld()
        let server = CAServerIdentity(configured: nil, files: world.files)
        #expect(server.credentials(bundlePath: world.configuredBundle, clientCertificate: true).bundlePEMPath == world.files.bundle)
        #expect(server.credentials(bundlePath: world.configuredBundle, clientCertificate: false).bundlePEMPath == world.files.bundle)
        #expect(server.enrollmentCredentials(bundlePath: world.configuredBundle).bundlePEMPath == world.configuredBundle,
                "a token is spent only on a CA --ca-bundle vouches for")
        let fresh = CAServerIdentity(configured: nil, files: IdentityFiles(directory: world.directory + "/none"))
        #expect(fresh.credentials(bundlePath: world.configuredBundle, clientCertificate: false).bundlePEMPath == world.configuredBundle)
    }

    @Test func crlsAreHeldPerIssuerAndBothAreEnforced() async throws {
        let world = try RolloverWorld()
        await world.apply(world.prepared)
        // After the switch I2 signs (GetCRL with no issuer); I1 still has live certificates and its
        // own CRL, with a higher number than I2's: numbers are compared per issuer.
        let crls = ScriptedIssuerCRLs()
        func crl(_ signer: CertificateSigner, number: Int64, revoking serial: String) throws -> [UInt8] {
            try signer.makeCRL(entries: [RevokedCertificateEntry(serial: SerialNumber.bytes(fromHex: serial)!, revokedAt: Date(), reason: 1)],
                               number: number, thisUpdate: Date().addingTimeInterval(-60), nextUpdate: Date().addingTimeInterval(3600))
        }
        let i1 = world.i1.certificate.serialHex
        let follower = RevocationFollower(files: world.files, replicas: CAReplicas(CAAddressList(HostPort(host: "127.0.0.1", port: 1)), logger: world.log.logger),
                                          source: crls, refreshInterval: .seconds(60), clock: SystemAgentClock(), logger: world.log.logger)
        // Before the switch I1 is active (crl.der); after it, I2 is, and I1's CRL moves to crl-<I1>.der
        // even while I1's own fetch fails.
        let previous = try crl(world.i1, number: 50, revoking: "bb"), active = try crl(world.i2, number: 3, revoking: "aa")
        crls.set(["": previous])
        try await follower.refreshCRL()
        crls.set(["": active])
        try await follower.refreshCRL()
        #expect(FileManager.default.contents(atPath: follower.crlPath(issuer: i1)) == Data(previous))
        crls.set(["": active, i1: previous])
        try await follower.refreshCRL()
        // The roots' CRLs (for crl.pem) are asked for as well, by root serial.
        let roots = Set([world.r1.certificate.serialHex, world.r2.certificate.serialHex])
        #expect(crls.asked.filter { !roots.contains($0) } == ["", i1], "one CRL per issuer key: X shares I2's, so it is not asked for")
        #expect(follower.isRevoked("aa") && follower.isRevoked("bb") && !follower.isRevoked("cc"))
        #expect(follower.heldNumbers == [follower.crlPath: 3, follower.crlPath(issuer: i1): 50])

        // An older CRL of I1 is refused; I2's is kept as it is.
        crls.set(["": active, i1: try crl(world.i1, number: 49, revoking: "dd")])
        try await follower.refreshCRL()
        #expect(world.log.lines.contains { $0.contains("CRL refresh of an issuer failed") && $0.contains("CRL number 49 is lower than the 50 held") })
        #expect(follower.isRevoked("bb") && !follower.isRevoked("dd"))

        // A restart without the CA still refuses both.
        let restarted = RevocationFollower(files: world.files, replicas: CAReplicas(CAAddressList(HostPort(host: "127.0.0.1", port: 1)), logger: world.log.logger),
                                           source: crls, refreshInterval: .seconds(60), clock: SystemAgentClock(), logger: world.log.logger)
        await restarted.loadSavedCRL()
        #expect(restarted.isRevoked("aa") && restarted.isRevoked("bb"))

        // I1 retired (gone from the bundle): its CRL is forgotten and its file removed.
        await world.apply(world.bundle(8, roots: [world.r1.certificate, world.r2.certificate], intermediates: [world.i2.certificate, world.cross],
                                       endorsements: [world.endorsement]))
        try await restarted.refreshCRL()
        #expect(!restarted.isRevoked("bb") && restarted.isRevoked("aa"))
        #expect(!FileManager.default.fileExists(atPath: restarted.crlPath(issuer: i1)))
    }

    @Test func theCRLIsFetchedOncePerIntervalOrHintNeverInALoop() async throws {
        let world = try RolloverWorld()
        let crls = ScriptedIssuerCRLs()
        crls.set(["": try world.i1.makeCRL(entries: [], number: 1, thisUpdate: Date().addingTimeInterval(-60),
                                           nextUpdate: Date().addingTimeInterval(3600))])
        let clock = ManualAgentClock()
        let follower = RevocationFollower(files: world.files, replicas: CAReplicas(CAAddressList(HostPort(host: "127.0.0.1", port: 1)), logger: world.log.logger),
                                          source: crls, refreshInterval: .seconds(60), clock: clock, logger: world.log.logger)
        let refreshing = Task { try await follower.refreshCRLForever() }
        defer { refreshing.cancel() }
        for round in 1...3 {
            try await clock.waitForSleepers()
            // Counted by the active issuer's CRL (the roots' CRLs are asked for in the same refresh).
            #expect(crls.asked.filter(\.isEmpty).count == round)
            // The interval, then a revocation hint, then the interval again.
            if round == 2 { follower.apply(FakeCertificateAuthority.event(serial: "0a", sequence: 1)) } else { clock.advance(by: 60) }
            try await waitUntil { crls.asked.filter(\.isEmpty).count > round }
        }
        try await clock.waitForSleepers()
        try await Task.sleep(for: .milliseconds(50))
        #expect(crls.asked.filter(\.isEmpty).count == 4, "waits for the next interval or hint")
    }

    private func waitUntil(_ condition: @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition() {
            guard ContinuousClock.now < deadline else { Issue.record("timed out"); return }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
