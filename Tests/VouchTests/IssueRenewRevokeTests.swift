import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// The whole life of a service certificate against a real `vouch server` process.
final class IssueRenewRevokeTests: XCTestCase {
    func testEnrollRenewRevokeOverMutualTLS() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: "spiffe://example.org/svc/web", dns: ["web.internal"], ips: ["10.0.0.7"])

        // Enroll: token, no client certificate.
        let key1 = try PrivateKey(generating: .p256)
        let first = try await ca.enroll(token: token, key: key1)
        let leaf1 = try X509Certificate(der: Array(first.certificate))
        XCTAssertEqual(first.spiffeID, "spiffe://example.org/svc/web")
        XCTAssertEqual(leaf1.serialHex, first.serial)
        XCTAssertEqual(leaf1.subjectAltNames.uris, ["spiffe://example.org/svc/web"])
        XCTAssertEqual(leaf1.subjectAltNames.dnsNames, ["web.internal"])
        XCTAssertEqual(leaf1.subjectAltNames.ipAddresses, ["10.0.0.7"])
        XCTAssertTrue(leaf1.matches(key1))
        XCTAssertEqual(first.chain.count, 1)
        XCTAssertEqual(first.roots.count, 1)
        XCTAssertEqual(first.notAfter, Int64(leaf1.notAfter.timeIntervalSince1970))
        // Default lifetime is 24 hours.
        XCTAssertEqual(leaf1.notAfter.timeIntervalSinceNow, 24 * 3600, accuracy: 120)

        // OpenSSL accepts the chain.
        let leafPath = ca.root + "/leaf1.pem"
        try leaf1.pem.write(toFile: leafPath, atomically: true, encoding: .utf8)
        let verified = try openssl(["verify", "-CAfile", ca.caDir + "/root.pem", "-untrusted", ca.caDir + "/intermediate.pem", leafPath])
        XCTAssertEqual(verified.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(leafPath): OK", verified.stderr)

        // Renew over mTLS with the issued certificate and a new key.
        let id1 = try ca.writeIdentity(first, key: key1, name: "web1")
        let key2 = try PrivateKey(generating: .p256)
        let second = try await ca.renew(with: id1, newKey: key2)
        let leaf2 = try X509Certificate(der: Array(second.certificate))
        XCTAssertNotEqual(second.serial, first.serial)
        XCTAssertEqual(second.spiffeID, first.spiffeID)
        XCTAssertEqual(leaf2.subjectAltNames, leaf1.subjectAltNames, "identity and SANs are copied from the current certificate")
        XCTAssertTrue(leaf2.matches(key2))

        let shown = try vouch("cert", "show", first.serial, "--dir", ca.caDir, "--server", ca.server.address, "--json")
        XCTAssertEqual(shown.status, 0, shown.stderr)
        let firstInfo = try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(firstInfo?["superseded_by"] as? String, second.serial, "the old serial is recorded as superseded")

        // The owner revokes its renewed certificate.
        let id2 = try ca.writeIdentity(second, key: key2, name: "web2")
        let revoked = try await ca.revoke(second.serial, reason: 1, as: id2)
        XCTAssertEqual(revoked.serial, second.serial)

        // A new connection with the revoked certificate is refused at the handshake.
        await assertRPCError(.unavailable, "renew on a new connection with a revoked certificate") {
            try await ca.renew(with: id2, newKey: try PrivateKey(generating: .p256))
        }

        // The CRL lists it, signed by the intermediate, with its reason.
        let response = try await ca.ca(ca.anonymous) { try await $0.getCRL(Vouch_V1_CRLRequest()) }
        let crl = try CertificateRevocationList(der: Array(response.crl))
        let intermediate = try X509Certificate(pem: String(contentsOfFile: ca.caDir + "/intermediate.pem", encoding: .utf8))
        XCTAssertTrue(crl.isSigned(by: intermediate))
        XCTAssertEqual(crl.number, response.crlNumber)
        XCTAssertGreaterThan(crl.nextUpdate ?? .distantPast, Date())
        XCTAssertEqual(crl.entries.map { SerialNumber.hex($0.serial) }, [second.serial])
        XCTAssertEqual(crl.entries.first?.reason, 1)

        let crlPath = ca.root + "/ca.crl"
        try response.crl.write(to: URL(fileURLWithPath: crlPath))
        let text = try openssl(["crl", "-inform", "DER", "-in", crlPath, "-noout", "-text",
                                "-CAfile", ca.caDir + "/intermediate.pem"])
        XCTAssertTrue(text.stdout.contains(second.serial.uppercased()), text.stdout)
        XCTAssertTrue(text.stdout.contains("Key Compromise"), text.stdout)
        XCTAssertTrue(text.stderr.contains("verify OK"), text.stderr)

        // The first certificate was not revoked and still works.
        let bundle = try await ca.ca(id1) { try await $0.getTrustBundle(Vouch_V1_TrustBundleRequest()) }
        XCTAssertEqual(bundle.roots.count, 1)
    }

    func testIssuedCertificateCarriesTheDesignFields() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: "spiffe://example.org/ns/prod/sa/api")
        let issued = try await ca.enroll(token: token, key: try PrivateKey(generating: .p256), ttl: 3600)
        let path = ca.root + "/leaf.pem"
        try X509Certificate(der: Array(issued.certificate)).pem.write(toFile: path, atomically: true, encoding: .utf8)
        let text = try openssl(["x509", "-in", path, "-noout", "-text"]).stdout
        for expected in ["Version: 3 (0x2)", "ecdsa-with-SHA256", "NIST CURVE: P-256",
                         "X509v3 Basic Constraints: critical", "CA:FALSE",
                         "X509v3 Key Usage: critical", "Digital Signature",
                         "TLS Web Server Authentication, TLS Web Client Authentication",
                         "X509v3 Subject Key Identifier", "X509v3 Authority Key Identifier",
                         "URI:spiffe://example.org/ns/prod/sa/api", "Issuer: O = Vouch, CN = Vouch Intermediate CA"] {
            XCTAssertTrue(text.contains(expected), "missing \(expected) in\n\(text)")
        }
        // 128-bit random serial: 16 bytes (the top byte may be zero, rarely).
        XCTAssertGreaterThanOrEqual(issued.serial.count, 16)
        XCTAssertLessThanOrEqual(issued.serial.count, 32)
        // Requested lifetime honoured.
        XCTAssertEqual(Double(issued.notAfter) - Date().timeIntervalSince1970, 3600, accuracy: 60)
    }

    func testServerRestartKeepsCertificatesRevocationsAndConsumedTokens() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: "spiffe://example.org/svc/db")
        let key = try PrivateKey(generating: .p256)
        let issued = try await ca.enroll(token: token, key: key)
        let identity = try ca.writeIdentity(issued, key: key, name: "db")
        _ = try await ca.revoke(issued.serial, reason: 4, as: ca.admin)
        let crlBefore = try await ca.ca(ca.anonymous) { try await $0.getCRL(Vouch_V1_CRLRequest()) }

        try ca.restartServer()

        await assertRPCError(.unauthenticated, "the consumed token stays consumed") {
            try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
        }
        await assertRPCError(.unavailable, "the revoked certificate stays refused at the handshake") {
            try await ca.renew(with: identity, newKey: try PrivateKey(generating: .p256))
        }
        let listed = try vouch("cert", "list", "--dir", ca.caDir, "--server", ca.server.address, "--json")
        XCTAssertEqual(listed.status, 0, listed.stderr)
        let rows = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]] ?? []
        let row = rows.first { $0["serial"] as? String == issued.serial }
        XCTAssertEqual(row?["status"] as? String, "revoked")
        XCTAssertEqual(row?["revocation_reason"] as? String, "superseded")
        XCTAssertEqual(rows.count, 5, "server + admin from init, the enrolled certificate, and a listener certificate per start")

        let crlAfter = try await ca.ca(ca.anonymous) { try await $0.getCRL(Vouch_V1_CRLRequest()) }
        let crl = try CertificateRevocationList(der: Array(crlAfter.crl))
        XCTAssertEqual(crl.entries.map { SerialNumber.hex($0.serial) }, [issued.serial])
        XCTAssertGreaterThan(crlAfter.crlNumber, crlBefore.crlNumber, "CRL numbers keep increasing across restarts")
    }
}
