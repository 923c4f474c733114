import Foundation
import VouchAPI
@testable import VouchAgent
import VouchCrypto
import VouchTLS
import X509
import XCTest

/// crl.pem, the agent's file for servers that check CRLs for the whole chain (nginx `ssl_crl`,
/// HAProxy `crl-file`, PostgreSQL `ssl_crl_file`): the intermediate's CRL and the root's, so
/// `openssl verify -crl_check_all` passes with it and fails for a revoked certificate.
final class AgentCRLFileTests: XCTestCase {
    func testCRLFileChecksTheWholeChainAndListsARevokedCertificate() async throws {
        let ca = try CAFixture()
        let (agent, out) = try ca.startAgent(ttl: "1h", extra: ["--metrics", "127.0.0.1:0"])
        defer { agent.stop() }
        func crlCount() -> Int { ((try? String(contentsOfFile: out + "/crl.pem", encoding: .utf8)) ?? "").components(separatedBy: "BEGIN X509 CRL").count - 1 }
        XCTAssertTrue(eventually(timeout: 5) { crlCount() == 2 }, "the intermediate's and the root's CRL: \(agent.log)")
        // The gauge: seconds until the earliest nextUpdate in crl.pem (the intermediate's CRL; the root's lasts longer).
        let earliest = try XCTUnwrap(CertificateRevocationList(der: Array(try XCTUnwrap(FileManager.default.contents(atPath: out + "/crl.der")))).nextUpdate)
        let metrics = try execute("/usr/bin/curl", ["-sf", "http://\(announcedAddress(in: agent.log, after: "vouch agent metrics on ") ?? "")/metrics"]).stdout
        let gauge = try XCTUnwrap(metrics.split(separator: "\n").first { $0.hasPrefix("vouch_agent_crl_expires_in_seconds ") }, metrics)
        XCTAssertEqual(try XCTUnwrap(Double(gauge.split(separator: " ")[1])), earliest.timeIntervalSinceNow, accuracy: 30)
        func verify(_ leaf: String, crls: String = out + "/crl.pem") throws -> CommandResult {
            try openssl(["verify", "-crl_check_all", "-CAfile", out + "/bundle.pem", "-untrusted", out + "/chain.pem", "-CRLfile", crls, leaf])
        }
        XCTAssertEqual(try verify(out + "/svid.pem").stdout, "\(out)/svid.pem: OK\n")
        // The root's CRL is what makes it pass: the intermediate's alone is refused.
        let intermediateOnly = ca.root + "/intermediate-crl.pem"
        try PEM.encode(Array(try XCTUnwrap(FileManager.default.contents(atPath: out + "/crl.der"))), label: "X509 CRL")
            .write(toFile: intermediateOnly, atomically: true, encoding: .utf8)
        let partial = try verify(out + "/svid.pem", crls: intermediateOnly)
        XCTAssertTrue((partial.stdout + partial.stderr).contains("unable to get certificate CRL"), partial.stdout + partial.stderr)

        let key = try PrivateKey(generating: .p256)
        let other = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/other"), key: key)
        let otherLeaf = ca.root + "/other.pem"
        try X509Certificate(der: Array(other.certificate)).pem.write(toFile: otherLeaf, atomically: true, encoding: .utf8)
        XCTAssertEqual(try verify(otherLeaf).stdout, "\(otherLeaf): OK\n")
        let revoked = try vouch("cert", "revoke", other.serial, "--reason", "keyCompromise", "--dir", ca.caDir, "--server", ca.server.address)
        XCTAssertEqual(revoked.status, 0, revoked.stderr)
        XCTAssertTrue(eventually(timeout: 5) { ((try? verify(otherLeaf)).map { $0.stdout + $0.stderr } ?? "").contains("certificate revoked") },
                      "the agent's crl.pem lists the revoked certificate: \(agent.log)")
        XCTAssertEqual(try verify(out + "/svid.pem").stdout, "\(out)/svid.pem: OK\n", "its own certificate still passes")
    }

    /// During a root rollover bundle.pem holds R1 and R2, so crl.pem holds a CRL from each (OpenSSL
    /// may build the path through either); once R1 retires, its CRL leaves crl.pem and the directory.
    /// Without the CA having a root's CRL, the agent says so once.
    func testRolloverCRLFileHoldsEachBundleRootsCRL() async throws {
        let world = try RolloverWorld()
        func crl(_ signer: CertificateSigner, _ number: Int64) throws -> [UInt8] {
            try signer.makeCRL(entries: [], number: number, thisUpdate: Date().addingTimeInterval(-60), nextUpdate: Date().addingTimeInterval(3600))
        }
        func pem(_ der: [UInt8]) -> String { PEM.encode(der, label: "X509 CRL") }
        let out = world.files.directory
        let crls = ScriptedIssuerCRLs()
        let i1CRL = try crl(world.i1, 1)
        crls.set(["": i1CRL])
        let follower = RevocationFollower(files: world.files, replicas: CAReplicas(CAAddressList(HostPort(host: "127.0.0.1", port: 1)), logger: world.log.logger),
                                          source: crls, refreshInterval: .seconds(60), clock: SystemAgentClock(), logger: world.log.logger)
        try await follower.refreshCRL()
        try await follower.refreshCRL()
        let r1 = world.r1.certificate.serialHex, r2 = world.r2.certificate.serialHex
        XCTAssertEqual(world.log.lines.filter { $0.contains(DerivedFiles.missingRootCRL(r1)) }.count, 1, "said once: \(world.log.lines)")
        XCTAssertEqual(try String(contentsOfFile: out + "/crl.pem", encoding: .utf8), pem(i1CRL), "written all the same")

        var prepared = world.prepared
        let r1CRL = try crl(world.r1, 1), r2CRL = try crl(world.r2, 1)
        prepared.rootCRLs = [r1CRL, r2CRL]
        await world.apply(prepared)
        XCTAssertEqual(try String(contentsOfFile: out + "/crl.pem", encoding: .utf8), pem(i1CRL) + [(r1, r1CRL), (r2, r2CRL)].sorted { $0.0 < $1.0 }.map { pem($0.1) }.joined())
        let verified = try openssl(["verify", "-crl_check_all", "-CAfile", out + "/bundle.pem", "-untrusted", out + "/chain.pem",
                                    "-CRLfile", out + "/crl.pem", out + "/svid.pem"])
        XCTAssertEqual(verified.stdout, "\(out)/svid.pem: OK\n", verified.stderr)

        try world.renewUnderTheNewRoot()
        var retired = world.retired
        retired.rootCRLs = [r2CRL]
        await world.apply(retired)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/crl-\(r1).der"), "the retired root's CRL file is removed")
        XCTAssertFalse(try String(contentsOfFile: out + "/crl.pem", encoding: .utf8).contains(pem(r1CRL)), "and left crl.pem in the same write")
        XCTAssertTrue(try String(contentsOfFile: out + "/crl.pem", encoding: .utf8).contains(pem(r2CRL)))
        // The same write recomputed chain.pem ([I2, X] → [I2]) and the full chain made from it.
        XCTAssertEqual(try world.serials(out + "/chain.pem"), [world.i2.certificate.serialHex])
        XCTAssertEqual(try String(contentsOfFile: out + "/fullchain.pem", encoding: .utf8),
                       try String(contentsOfFile: out + "/svid.pem", encoding: .utf8) + String(contentsOfFile: out + "/chain.pem", encoding: .utf8))
    }

    /// A root CRL is kept only when a root of bundle.pem signed it, it is fresh, and its number is
    /// not lower than the one held (the same number must be the same CRL).
    func testRootCRLIntakeKeepsOnlyFreshNewerCRLsSignedByAHeldRoot() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let now = Date()
        let rootKey = try PrivateKey(generating: .p256)
        let rootX509 = try CertificateSigner.selfSigned(key: rootKey, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Held Root")],
            notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(86400)))
        let root = try Certificate(derEncoded: rootX509.der)
        let signer = try CertificateSigner(certificate: rootX509, key: rootKey)
        func rootCRL(_ number: Int64, nextUpdate: TimeInterval = 86400) throws -> [UInt8] {
            try signer.makeCRL(entries: [], number: number, thisUpdate: now.addingTimeInterval(-60), nextUpdate: now.addingTimeInterval(nextUpdate))
        }
        let intake = RootCRLIntake(files: IdentityFiles(directory: directory))
        let path = directory + "/crl-\(root.serialHex).der"

        let five = try rootCRL(5)
        XCTAssertEqual(intake.newer([five], roots: [root], now: now).files.map(\.path), [path])
        try Data(five).write(to: URL(fileURLWithPath: path))
        let stranger = try TestCA.material(now: now)
        let cases: [([UInt8], String)] = [
            (try stranger.signer.makeCRL(entries: [], number: 9, thisUpdate: now, nextUpdate: now.addingTimeInterval(60)),
             "a root CRL not signed by a root in bundle.pem was ignored"),
            (try rootCRL(9, nextUpdate: -1), "the CRL 9 of root \(root.serialHex) is stale"),
            (try rootCRL(4), "the CRL 4 of root \(root.serialHex) is older than the 5 held"),
            (try rootCRL(5, nextUpdate: 7200), "the CRL number 5 of root \(root.serialHex) was reused for a different CRL"),
        ]
        for (der, reason) in cases {
            let result = intake.newer([der], roots: [root], now: now)
            XCTAssertEqual(result.files.count, 0, reason)
            XCTAssertTrue(result.refused.first?.contains(reason) == true, "\(result.refused) should say \(reason)")
        }
        XCTAssertEqual(intake.newer([five], roots: [root], now: now).files.count, 0, "the CRL held is not newer")
        XCTAssertEqual(intake.newer([five], roots: [root], now: now).refused, [])
        XCTAssertEqual(intake.newer([try rootCRL(4), try rootCRL(6)], roots: [root], now: now).files.map(\.path), [path])
    }
}
