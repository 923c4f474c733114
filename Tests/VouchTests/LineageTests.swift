import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// A lineage (a certificate and everything renewed from it) has one live certificate, and
/// a compromised key takes down everything renewed with it.
final class LineageTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    /// Enrolls and renews `renewals` times, each renewal with the previous certificate; returns every
    /// identity in order, first enrollment first.
    func lineage(_ ca: CAFixture, renewals: Int) async throws -> [(serial: String, credentials: VouchClient.Credentials)] {
        var key = try PrivateKey(generating: .p256)
        let first = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: key)
        var line = [(first.serial, try ca.writeIdentity(first, key: key, name: "gen0"))]
        for generation in 1...max(renewals, 1) where renewals > 0 {
            let next = try PrivateKey(generating: .p256)
            let renewed = try await ca.renew(with: line.last!.1, newKey: next)
            key = next
            line.append((renewed.serial, try ca.writeIdentity(renewed, key: key, name: "gen\(generation)")))
        }
        return line
    }

    func status(_ ca: CAFixture, _ serial: String) throws -> [String: Any] {
        let shown = try vouch("cert", "show", serial, "--json", "--dir", ca.caDir, "--server", ca.server.address)
        XCTAssertEqual(shown.status, 0, shown.stderr)
        return try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any] ?? [:]
    }

    func testASupersededCertificateCannotRenewOnceItsRetryWindowPassed() async throws {
        let base = try CAFixture()
        base.server.stop()
        let ca = try CAFixture(reusing: base, server: try ServerProcess(directory: base.caDir,
                                                                       extraArguments: ["--renewal-retry-window", "1s"]))
        // The rule is proved without waiting in CertificateAuthorityRulesTests; here one real second passes.
        let line = try await lineage(ca, renewals: 1)
        try await Task.sleep(for: .milliseconds(1050))  // renewed before lineage returned: the window has passed
        await assertRPCError(.failedPrecondition, "a second renewal from the superseded certificate", reason: .certificateSuperseded) {
            try await ca.renew(with: line[0].credentials, newKey: try PrivateKey(generating: .p256))
        }
        XCTAssertEqual(try status(ca, line[1].serial)["status"] as? String, "active", "the newest certificate stays live")
        // The newest one renews as usual.
        _ = try await ca.renew(with: line[1].credentials, newKey: try PrivateKey(generating: .p256))
    }

    func testARetriedRenewalRevokesTheFirstChildSoOneCertificateStaysLive() async throws {
        let ca = try CAFixture()
        let line = try await lineage(ca, renewals: 1)
        // Within the retry window (60 s by default): a client whose response was lost renews again.
        let retried = try await ca.renew(with: line[0].credentials, newKey: try PrivateKey(generating: .p256))
        let child = try status(ca, line[1].serial)
        XCTAssertEqual(child["status"] as? String, "revoked")
        XCTAssertEqual(child["revocation_reason"] as? String, "superseded")
        XCTAssertEqual(try status(ca, line[0].serial)["superseded_by"] as? String, retried.serial)
        await assertRPCError(.unavailable, "the replaced child is refused at the handshake") {
            try await ca.renew(with: line[1].credentials, newKey: try PrivateKey(generating: .p256))
        }
        // Once: a second retry from the same certificate is what a thief renewing in a loop would do.
        await assertRPCError(.failedPrecondition, "a second retry from the superseded certificate") {
            try await ca.renew(with: line[0].credentials, newKey: try PrivateKey(generating: .p256))
        }
        XCTAssertEqual(try status(ca, retried.serial)["status"] as? String, "active", "the retried child stays live")
        let audit = try vouch("audit", "list", "--dir", ca.caDir, "--server", ca.server.address, "--json")
        XCTAssertTrue(audit.stdout.contains("revoke.superseded"), "the fork is in the audit log")
    }

    func testKeyCompromiseRevokesEveryRenewalAfterTheRevokedCertificate() async throws {
        let ca = try CAFixture()
        let line = try await lineage(ca, renewals: 2)
        let revoked = try vouch("cert", "revoke", line[0].serial, "--reason", "keyCompromise", "--dir", ca.caDir,
                                "--server", ca.server.address)
        XCTAssertEqual(revoked.status, 0, revoked.stderr)
        for (generation, entry) in line.enumerated() {
            let shown = try status(ca, entry.serial)
            XCTAssertEqual(shown["status"] as? String, "revoked", "generation \(generation)")
            XCTAssertEqual(shown["revocation_reason"] as? String, "keyCompromise", "generation \(generation)")
        }
        await assertRPCError(.unavailable, "the newest certificate of the line can no longer renew") {
            try await ca.renew(with: line[2].credentials, newKey: try PrivateKey(generating: .p256))
        }
        // The CRL lists all three.
        let crl = try await ca.ca(ca.anonymous) { try await $0.getCRL(Vouch_V1_CRLRequest()) }
        let listed = Set(try CertificateRevocationList(der: Array(crl.crl)).entries.map { SerialNumber.hex($0.serial) })
        XCTAssertTrue(Set(line.map(\.serial)).isSubset(of: listed))
        // `cert show` tells the whole line.
        let shown = try status(ca, line[1].serial)
        let lineage = (shown["lineage"] as? [[String: Any]])?.compactMap { $0["serial"] as? String }
        XCTAssertEqual(lineage, line.map(\.serial))
        let text = try vouch("cert", "show", line[1].serial, "--dir", ca.caDir, "--server", ca.server.address)
        XCTAssertTrue(text.stdout.contains("lineage:      \(line[0].serial) (revoked) -> [\(line[1].serial)] (revoked) -> \(line[2].serial) (revoked)"),
                      text.stdout)
    }

    func testOtherReasonsRevokeOnlyTheNamedCertificate() async throws {
        let ca = try CAFixture()
        let line = try await lineage(ca, renewals: 1)
        _ = try await ca.revoke(line[0].serial, reason: 4, as: ca.admin)
        XCTAssertEqual(try status(ca, line[1].serial)["status"] as? String, "active")
    }

    /// The same P-256 key as a compressed point is still the same key.
    func testRenewalReusingTheKeyInAnotherEncodingIsInvalidArgument() async throws {
        let ca = try CAFixture()
        let key = try PrivateKey(generating: .p256)
        let issued = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: key)
        let identity = try ca.writeIdentity(issued, key: key, name: "web")
        let compressed = ca.root + "/compressed_key.pem"
        let converted = try openssl(["ec", "-in", identity.keyPEMPath!, "-conv_form", "compressed", "-out", compressed])
        XCTAssertEqual(converted.status, 0, converted.stderr)
        let request = try openssl(["req", "-new", "-key", compressed, "-subj", "/O=web", "-outform", "DER", "-out", ca.root + "/csr.der"])
        XCTAssertEqual(request.status, 0, request.stderr)
        let csr = try Data(contentsOf: URL(fileURLWithPath: ca.root + "/csr.der"))
        let parsed = try CertificateSigningRequest(der: Array(csr))
        XCTAssertNotEqual(try parsed.publicKeyDER, Array(CertificateDER.subjectPublicKeyInfo(Array(issued.certificate))!),
                          "the test sends the key in a different encoding")
        var renew = Vouch_V1_RenewRequest()
        renew.csr = csr
        await assertRPCError(.invalidArgument, "renewal with the current key, compressed") {
            try await ca.ca(identity) { try await $0.renew(renew, options: VouchClient.options()) }
        }
    }
}
