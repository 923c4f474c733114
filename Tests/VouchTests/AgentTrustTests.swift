import Foundation
import VouchAPI
import VouchCrypto
import XCTest

/// `vouch agent` talking to a CA that lies (its server key was stolen, or it is broken):
/// the agent believes only what verifies against the trust it already holds, writes
/// nothing it did not verify, and keeps serving and renewing.
final class AgentTrustTests: XCTestCase {
    let id = "spiffe://example.org/svc/web"

    /// The agent's four identity files, byte for byte.
    func identityFiles(_ out: String) -> [String: Data] {
        var files: [String: Data] = [:]
        for name in ["svid.pem", "svid_key.pem", "chain.pem", "bundle.pem"] {
            files[name] = FileManager.default.contents(atPath: out + "/" + name)
        }
        return files
    }

    func serialOnDisk(_ out: String) throws -> String {
        try X509Certificate(pem: String(contentsOfFile: out + "/svid.pem", encoding: .utf8)).serialHex
    }

    /// The certificate a TLS handshake with the agent's listener gets, presenting `identity` (cert, key).
    func handshake(_ agent: AgentProcess, as identity: (String, String)) throws -> X509Certificate {
        let result = try openssl(["s_client", "-connect", agent.address, "-alpn", "h2", "-cert", identity.0, "-key", identity.1],
                                 stdin: Data())
        return try X509Certificate(pem: result.stdout)
    }

    /// Enrolls an agent against the real CA, stops it, and starts it again on the same files
    /// against `fake` (renewing early and retrying every second).
    func agentMovedToFake(_ ca: CAFixture, ttl: String = "60s") async throws -> (AgentProcess, String, FakeCertificateAuthority) {
        let (enrolling, out) = try ca.startAgent(spiffeID: id, ttl: ttl)
        XCTAssertEqual(enrolling.stop(), 0)
        let fake = try await FakeCertificateAuthority.start(impersonating: ca)
        return (try AgentProcess(arguments: ["--ca", fake.address, "--ca-bundle", ca.caDir + "/bundle.pem", "--out", out,
                                             "--cert-ttl", ttl, "--renew-fraction", "0.11", "--max-backoff", "1s"]), out, fake)
    }

    func testHostileRenewalAnswersAreRejectedBeforeAnythingIsWritten() async throws {
        let ca = try CAFixture()
        // A 20 s certificate renewed at 0.11 of its life is due within about 1.5 s of enrollment
        // and lives long enough for the refusals below.
        let (agent, out, fake) = try await agentMovedToFake(ca, ttl: "20s")
        defer { agent.stop(); fake.stop() }
        XCTAssertTrue(agent.log.contains("using identity on disk"), agent.log)
        let before = identityFiles(out), serial = try serialOnDisk(out)
        let admin = (ca.caDir + "/admin.pem", ca.caDir + "/admin_key.pem")
        let id = self.id

        // Every kind of lying answer is refused in process (RenewalAnswerTrustTests, and oversized
        // ones by the CA client in CAAnswerLimitsTests); here the agent meets one of them.
        fake.answerIssuance { csr in
            fake.response(try fake.attackerRoot.sign(csr, template: fake.leafTemplate(spiffeID: id, lifetime: 60)),
                          chain: [], roots: [fake.attackerRoot.certificate])
        }
        XCTAssertTrue(eventually(timeout: 10) {
            agent.log.split(separator: "\n").contains {
                $0.contains("rejected the CA's answer; keeping the current certificate") && $0.contains("does not chain to a trusted root")
            }
        }, agent.log)
        XCTAssertTrue(identityFiles(out) == before, "the files on disk are byte-identical")
        XCTAssertEqual(try handshake(agent, as: admin).serialHex, serial, "the listener still serves the last good certificate")

        // It kept renewing: an honest certificate is taken, but not the roots that came with it
        // (none at all, then only the attacker's). A 6 s certificate is renewed again about 0.7 s
        // later, so the test waits for a serial issued with those very roots.
        for roots in [[], [fake.attackerRoot.certificate]] {
            let issued = ReloadLog()
            fake.answerIssuance { csr in
                let leaf = try fake.honest.sign(csr, template: fake.leafTemplate(spiffeID: id, lifetime: 6, notBefore: Date()))
                issued.append(leaf.serialHex)
                return fake.response(leaf, roots: roots)
            }
            XCTAssertTrue(eventually(timeout: 10) { (try? self.serialOnDisk(out)).map(issued.serials.contains) == true }, agent.log)
            XCTAssertEqual(identityFiles(out)["bundle.pem"], before["bundle.pem"], "bundle.pem keeps the roots the agent held")
        }
        XCTAssertTrue(eventually { agent.log.contains("ignoring roots in the CA's answer that the agent does not already trust") }, agent.log)
        XCTAssertTrue(eventually { (try? self.handshake(agent, as: admin).serialHex) == (try? self.serialOnDisk(out)) },
                      "the listener serves the new certificate")
    }

    func testAHostileEnrollmentAnswerIsRejectedAndNothingIsWritten() async throws {
        let ca = try CAFixture()
        let fake = try await FakeCertificateAuthority.start(impersonating: ca)
        defer { fake.stop() }
        let tokenFile = ca.root + "/token"
        try "any-token".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let id = self.id
        let hostile: [(reason: String, answer: FakeCertificateAuthority.Answer)] = [
            ("does not chain to a trusted root", { csr in
                fake.response(try fake.attackerRoot.sign(csr, template: fake.leafTemplate(spiffeID: id, lifetime: 60)),
                              chain: [], roots: [fake.attackerRoot.certificate]) }),
            ("must carry exactly one spiffe:// URI SAN", { csr in
                fake.response(try fake.honest.sign(csr, template: fake.leafTemplate(spiffeID: id, lifetime: 60,
                                                                                    extraURIs: ["spiffe://example.org/vouch/admin"]))) }),
        ]
        for (index, (reason, answer)) in hostile.enumerated() {
            fake.answerIssuance(answer)
            let out = ca.root + "/agent\(index)"
            let result = try execute("/usr/bin/timeout", ["20", VouchBinary.path, "agent", "--ca", fake.address, "--ca-bundle",
                                                          ca.caDir + "/bundle.pem", "--out", out, "--token-file", tokenFile])
            XCTAssertEqual(result.status, 1, result.stderr)
            let last = result.stderr.split(separator: "\n").last.map(String.init) ?? ""
            XCTAssertTrue(last.hasPrefix("vouch: rejected the CA's enrollment answer: certificate "), result.stderr)
            XCTAssertTrue(last.contains(reason), result.stderr)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out), [], "nothing written")
        }
    }

    func testAnIdentityOnDiskThatDoesNotVerifyIsNotUsed() async throws {
        let ca = try CAFixture()
        let (enrolling, out) = try ca.startAgent(spiffeID: id, ttl: "60s")
        XCTAssertEqual(enrolling.stop(), 0)
        // What an earlier, trusting agent may have left: an attacker root planted in bundle.pem
        // and a long-lived leaf from it, with the matching key.
        let fake = try await FakeCertificateAuthority.start(impersonating: ca)
        fake.stop()
        let key = try PrivateKey(generating: .p256)
        let planted = try fake.attackerRoot.sign(publicKeyOf: key, template: fake.leafTemplate(spiffeID: id, lifetime: 100 * 365 * 86400))
        try planted.pem.write(toFile: out + "/svid.pem", atomically: true, encoding: .utf8)
        try key.pkcs8PEM().write(toFile: out + "/svid_key.pem", atomically: true, encoding: .utf8)
        try "".write(toFile: out + "/chain.pem", atomically: true, encoding: .utf8)
        try (fake.attackerRoot.certificate.pem + fake.realRoot.pem).write(toFile: out + "/bundle.pem", atomically: true, encoding: .utf8)

        // No token: the agent says why it will not use the files, and stops.
        let result = try execute("/usr/bin/timeout", ["20", VouchBinary.path, "agent"] + ca.agentArguments(out: out, ttl: "60s"))
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("not using the identity on disk"), result.stderr)
        XCTAssertTrue(result.stderr.contains("bundle.pem holds a root (Vouch Root CA) that is not in --ca-bundle"), result.stderr)
        XCTAssertFalse(result.stderr.contains("using identity on disk"))

        // With a token it enrolls again, and the planted root is gone.
        let tokenFile = ca.root + "/token2"
        try ca.createToken(spiffeID: id).write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let agent = try AgentProcess(arguments: ca.agentArguments(out: out, ttl: "60s") + ["--token-file", tokenFile])
        defer { agent.stop() }
        XCTAssertTrue(agent.log.contains("enrolled"), agent.log)
        XCTAssertEqual(try String(contentsOfFile: out + "/bundle.pem", encoding: .utf8), fake.realRoot.pem)
    }

    func testRevocationEventsAreOnlyHintsAndOnlyANewerFreshSignedCRLCounts() async throws {
        let ca = try CAFixture()
        // Two client services: one the real CA revokes, one that stays valid.
        var clients: [(serial: String, files: (String, String))] = []
        for name in ["revoked", "valid"] {
            let key = try PrivateKey(generating: .p256)
            let issued = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/\(name)"), key: key)
            let credentials = try ca.writeIdentity(issued, key: key, name: name)
            clients.append((issued.serial, (credentials.certificatePEMPath!, credentials.keyPEMPath!)))
        }
        let (revoked, valid) = (clients[0], clients[1])

        // The real CA revokes one; the CRL the agent fetches when it starts lists it.
        _ = try await ca.revoke(revoked.serial, as: ca.admin)
        let (enrolling, out) = try ca.startAgent(spiffeID: id, ttl: "20s")
        func savedCRL() -> CertificateRevocationList? {
            FileManager.default.contents(atPath: out + "/crl.der").flatMap { try? CertificateRevocationList(der: Array($0)) }
        }
        XCTAssertTrue(eventually(timeout: 5) { savedCRL()?.entries.contains { SerialNumber.hex($0.serial) == revoked.serial } == true })
        XCTAssertEqual(enrolling.stop(), 0)
        let held = try XCTUnwrap(savedCRL()), heldNumber = try XCTUnwrap(held.number)
        let own = try serialOnDisk(out)

        // The fake streams forged revocations of the agent's own certificate and of the valid
        // client, and serves a genuinely signed but older CRL that lacks the revoked client.
        let fake = try await FakeCertificateAuthority.start(impersonating: ca)
        fake.answerCRL { try fake.genuineCRL(number: heldNumber - 1) }
        fake.stream([FakeCertificateAuthority.event(serial: own, sequence: 1),
                     FakeCertificateAuthority.event(serial: valid.serial, spiffeID: "spiffe://example.org/svc/valid", sequence: 2)])
        let id = self.id
        // 5 s certificates from now on, renewed about every 0.6 s.
        fake.answerIssuance { csr in
            fake.response(try fake.honest.sign(csr, template: fake.leafTemplate(spiffeID: id, lifetime: 5, notBefore: Date())))
        }
        let agent = try AgentProcess(arguments: ["--ca", fake.address, "--ca-bundle", ca.caDir + "/bundle.pem", "--out", out,
                                                 "--cert-ttl", "20s", "--renew-fraction", "0.11", "--max-backoff", "1s"])
        defer { agent.stop(); fake.stop() }
        XCTAssertTrue(agent.log.contains("loaded saved CRL"), agent.log)
        XCTAssertTrue(eventually(timeout: 5) { agent.log.contains("CRL number \(heldNumber - 1) is lower than the \(heldNumber) held") }, agent.log)
        XCTAssertTrue(eventually(timeout: 5) { agent.log.contains("revocation hint received; fetching the CRL") }, agent.log)
        let heldAtHint = try serialOnDisk(out)

        // The valid client is still accepted, the revoked one still refused (saved CRL).
        _ = try handshake(agent, as: valid.files)
        _ = try handshake(agent, as: revoked.files)
        XCTAssertTrue(eventually { agent.log.contains("certificate \(revoked.serial) is revoked") }, agent.log)
        XCTAssertFalse(agent.log.contains("certificate \(valid.serial) is revoked"), agent.log)
        // A forged revocation of its own certificate does not stop the agent renewing (a renewal
        // after the forged event arrived).
        XCTAssertTrue(eventually(timeout: 10) { (try? self.serialOnDisk(out)) != heldAtHint }, agent.log)
        XCTAssertFalse(agent.log.contains("the CA will not renew it"), agent.log)

        // A newer CRL past its nextUpdate, and one signed by another key: refused too, at once on a hint.
        let stale: @Sendable () throws -> [UInt8] = { try fake.genuineCRL(number: heldNumber + 5, nextUpdate: Date().addingTimeInterval(-60)) }
        let forged: @Sendable () throws -> [UInt8] = {
            try fake.attackerRoot.makeCRL(entries: [RevokedCertificateEntry(serial: SerialNumber.bytes(fromHex: valid.serial)!, revokedAt: Date(), reason: 1)],
                                          number: heldNumber + 9, thisUpdate: Date(), nextUpdate: Date().addingTimeInterval(3600))
        }
        for (crl, reason, sequence) in [(stale, "is stale", Int64(3)), (forged, "is not signed by an issuing CA", Int64(4))] {
            fake.answerCRL(crl)
            fake.stream([FakeCertificateAuthority.event(serial: valid.serial, sequence: sequence)])
            XCTAssertTrue(eventually(timeout: 3) { agent.log.contains(reason) }, agent.log)
        }
        XCTAssertEqual(FileManager.default.contents(atPath: out + "/crl.der").map { Array($0) }, held.der, "crl.der is unchanged")
        _ = try handshake(agent, as: revoked.files)
        XCTAssertEqual(agent.log.components(separatedBy: "certificate \(revoked.serial) is revoked").count, 3, "still refused")
        XCTAssertFalse(agent.log.contains("certificate \(valid.serial) is revoked"))
    }

    func testAServerWithAStolenIntermediateCannotPlantARoot() async throws {
        let ca = try CAFixture()
        let (enrolling, out) = try ca.startAgent(spiffeID: id, ttl: "60s")
        XCTAssertEqual(enrolling.stop(), 0)
        // The thief has the intermediate key: it signs itself a /vouch/server certificate that passes
        // the agent's server check, and with the same key "endorses" a root of its own.
        let fake = try await FakeCertificateAuthority.start(impersonating: ca, presenting: .signedByStolenIntermediate)
        let rootKey = try PrivateKey(generating: .p256)
        let template = CertificateTemplate(role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Vouch Root CA 2")],
                                           notBefore: Date().addingTimeInterval(-60), notAfter: Date().addingTimeInterval(3600))
        let plantedRoot = try CertificateSigner.selfSigned(key: rootKey, template: template)
        var bundle = Vouch_V1_TrustBundle()
        bundle.roots = [fake.realRoot, plantedRoot].map { Data($0.der) }
        bundle.intermediates = [Data(fake.honest.certificate.der)]
        bundle.endorsements = [Data(try fake.honest.sign(publicKeyOf: rootKey, template: template).der)]
        bundle.generation = 5
        fake.sendTrustBundles([bundle])
        let before = identityFiles(out)

        let agent = try AgentProcess(arguments: ["--ca", fake.address, "--ca-bundle", ca.caDir + "/bundle.pem", "--out", out,
                                                 "--cert-ttl", "60s", "--metrics", "127.0.0.1:0"])
        defer { agent.stop(); fake.stop() }
        let refusal = "refused a trust bundle update: root Vouch Root CA 2 \(plantedRoot.serialHex) is not vouched for by a root the agent trusts"
        XCTAssertTrue(eventually(timeout: 10) { agent.log.contains(refusal) }, agent.log)
        XCTAssertGreaterThan(fake.trustBundleWatchers, 0, "the agent's server check accepted the thief's certificate")
        XCTAssertTrue(identityFiles(out) == before, "the files on disk are byte-identical")
        for name in ["endorsements.pem", "ca_intermediates.pem"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/" + name), name)
        }
        XCTAssertTrue(fake.trustConfirmations.isEmpty, "a refused bundle is not confirmed")
        let metricsAddress = announcedAddress(in: agent.log, after: "vouch agent metrics on ") ?? ""
        let metrics = try execute("/usr/bin/curl", ["-sf", "http://\(metricsAddress)/metrics"])
        XCTAssertTrue(metrics.stdout.split(separator: "\n").contains("vouch_agent_trust_updates_refused_total 1"), metrics.stdout)
        XCTAssertTrue(agent.process.isRunning)
    }

    func testAfterTheOldRootIsGoneARestartedAgentRenewsFromACAUnderTheEndorsedRoot() async throws {
        let ca = try CAFixture()
        let (enrolling, out) = try ca.startAgent(spiffeID: id, ttl: "60s")
        XCTAssertEqual(enrolling.stop(), 0)
        // What the agent holds after a rollover it followed: the new root R2 alone (endorsed by the
        // real root, which --ca-bundle still names) and a certificate from R2's intermediate.
        let realRoot = try CertificateSigner(certificate: X509Certificate(pem: String(contentsOfFile: ca.caDir + "/root.pem", encoding: .utf8)),
                                             key: PrivateKey(pem: String(contentsOfFile: ca.caDir + "/root_key.pem", encoding: .utf8)))
        func authority(_ name: String, pathLength: Int) throws -> CertificateTemplate {
            CertificateTemplate(role: .authority(pathLength: pathLength), serial: try SerialNumber.random(), subject: [("CN", name)],
                                notBefore: Date().addingTimeInterval(-60), notAfter: Date().addingTimeInterval(3600))
        }
        let r2Key = try PrivateKey(generating: .p256), i2Key = try PrivateKey(generating: .p256)
        let r2 = try CertificateSigner(certificate: CertificateSigner.selfSigned(key: r2Key, template: authority("Vouch Root CA 2", pathLength: 1)), key: r2Key)
        let i2 = try CertificateSigner(certificate: r2.sign(publicKeyOf: i2Key, template: authority("Vouch Intermediate CA 2", pathLength: 0)), key: i2Key)
        let fake = try await FakeCertificateAuthority.start(impersonating: ca, presenting: .issuedBy(i2, root: r2.certificate))
        let key = try PrivateKey(pem: String(contentsOfFile: out + "/svid_key.pem", encoding: .utf8))
        try i2.sign(publicKeyOf: key, template: fake.leafTemplate(spiffeID: id, lifetime: 20, notBefore: Date())).pem
            .write(toFile: out + "/svid.pem", atomically: true, encoding: .utf8)
        try i2.certificate.pem.write(toFile: out + "/chain.pem", atomically: true, encoding: .utf8)
        try r2.certificate.pem.write(toFile: out + "/bundle.pem", atomically: true, encoding: .utf8)
        try realRoot.sign(publicKeyOf: r2Key, template: authority("Vouch Root CA 2", pathLength: 1)).pem
            .write(toFile: out + "/endorsements.pem", atomically: true, encoding: .utf8)
        let id = self.id
        fake.answerIssuance { csr in
            fake.response(try i2.sign(csr, template: fake.leafTemplate(spiffeID: id, lifetime: 20, notBefore: Date())),
                          chain: [i2.certificate], roots: [r2.certificate])
        }
        let held = try serialOnDisk(out)

        // The restart proves R2 from --ca-bundle; the renewal verifies the CA against bundle.pem (R2).
        let agent = try AgentProcess(arguments: ["--ca", fake.address, "--ca-bundle", ca.caDir + "/bundle.pem", "--out", out,
                                                 "--cert-ttl", "20s", "--renew-fraction", "0.11", "--max-backoff", "1s"])
        defer { agent.stop(); fake.stop() }
        XCTAssertTrue(agent.log.contains("using identity on disk"), agent.log)
        XCTAssertTrue(eventually(timeout: 10) { (try? self.serialOnDisk(out)).map { $0 != held } == true }, agent.log)
        XCTAssertEqual(fake.renewals, 1)
        XCTAssertEqual(try String(contentsOfFile: out + "/bundle.pem", encoding: .utf8), r2.certificate.pem)
    }

    func testARevocationEventFloodIsDroppedAndLoggedBriefly() async throws {
        let ca = try CAFixture()
        let (agent, _, fake) = try await agentMovedToFake(ca)
        defer { agent.stop(); fake.stop() }
        // 300 events with serials too long to be a Vouch serial, then one event of 64 KiB.
        var flood = (1...300).map { FakeCertificateAuthority.event(serial: String(repeating: "ab", count: 21), sequence: Int64($0)) }
        flood.append(FakeCertificateAuthority.event(serial: "01", spiffeID: String(repeating: "x", count: 64 * 1024), sequence: 301))
        fake.stream(flood)
        XCTAssertTrue(eventually(timeout: 5) { agent.log.contains("resourceExhausted") }, agent.log)
        XCTAssertTrue(eventually { agent.log.contains("revocation events arriving faster than they are logged") }, agent.log)
        let dropped = agent.log.components(separatedBy: "dropped a malformed revocation event").count - 1
        XCTAssertGreaterThan(dropped, 0)
        XCTAssertLessThanOrEqual(dropped, 12, "a burst of 10 lines, then about one a second")
        XCTAssertLessThan(agent.log.utf8.count, 64 * 1024, "the log stays small")
        XCTAssertTrue(agent.process.isRunning)
    }

    func testAnUnusableOutputDirectoryIsRefusedBeforeTheTokenIsSpent() async throws {
        let ca = try CAFixture()
        let tokenFile = ca.root + "/token"
        try ca.createToken(spiffeID: id).write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let taken = ca.root + "/taken"
        try FileManager.default.createDirectory(atPath: taken + "/svid.pem", withIntermediateDirectories: true)
        try "x".write(toFile: ca.root + "/plainfile", atomically: true, encoding: .utf8)

        for (out, message) in [(taken, "\(taken)/svid.pem exists and is not a regular file"),
                               (ca.root + "/plainfile/agent", "cannot create --out \(ca.root)/plainfile/agent")] {
            let result = try execute("/usr/bin/timeout", ["20", VouchBinary.path, "agent"] + ca.agentArguments(out: out, ttl: "60s")
                + ["--token-file", tokenFile])
            XCTAssertEqual(result.status, 1, result.stderr)
            let lines = result.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, result.stderr)
            XCTAssertTrue(lines.first?.hasPrefix("vouch: \(message)") == true, result.stderr)
        }
        let tokens = try await VouchClient.with(server: ca.address, credentials: ca.admin) {
            try await Vouch_V1_Admin.Client(wrapping: $0).listTokens(Vouch_V1_ListTokensRequest(), options: VouchClient.options())
        }
        XCTAssertEqual(tokens.tokens.map { $0.usesConsumed }, [0], "the token is still unused")
    }
}
