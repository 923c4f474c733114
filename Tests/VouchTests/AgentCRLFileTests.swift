import Foundation
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
        let (agent, out) = try ca.startAgent(ttl: "1h")
        defer { agent.stop() }
        func crlCount() -> Int { ((try? String(contentsOfFile: out + "/crl.pem", encoding: .utf8)) ?? "").components(separatedBy: "BEGIN X509 CRL").count - 1 }
        XCTAssertTrue(eventually(timeout: 5) { crlCount() == 2 }, "the intermediate's and the root's CRL: \(agent.log)")
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
