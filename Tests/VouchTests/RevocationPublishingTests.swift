import Foundation
import VouchAPI
import VouchCrypto
import XCTest

/// CRL over plain HTTP and the OCSP responder, checked with the OpenSSL CLI.
final class RevocationPublishingTests: XCTestCase {
    func testCRLOverHTTPAndOCSPShowTheRevokedSerialWithItsReason() async throws {
        let ca = try CAFixture()
        ca.server.stop()
        let server = try ServerProcess(directory: ca.caDir, extraArguments: ["--http", "127.0.0.1:0"])
        defer { server.stop() }
        XCTAssertTrue(eventually { server.log.contains("vouch server http on ") }, server.log)
        let http = server.httpAddress ?? ""
        XCTAssertFalse(http.isEmpty, server.log)
        let fixture = try CAFixture(reusing: ca, server: server)

        let goodKey = try PrivateKey(generating: .p256), badKey = try PrivateKey(generating: .p256)
        let good = try await fixture.enroll(token: try fixture.createToken(spiffeID: "spiffe://example.org/svc/good"), key: goodKey)
        let bad = try await fixture.enroll(token: try fixture.createToken(spiffeID: "spiffe://example.org/svc/bad"), key: badKey)
        _ = try await fixture.revoke(bad.serial, reason: 1, as: fixture.admin)

        let goodPath = ca.root + "/good.pem", badPath = ca.root + "/bad.pem", crlPath = ca.root + "/crl.der"
        try X509Certificate(der: Array(good.certificate)).pem.write(toFile: goodPath, atomically: true, encoding: .utf8)
        try X509Certificate(der: Array(bad.certificate)).pem.write(toFile: badPath, atomically: true, encoding: .utf8)

        // GET /crl, as nginx or envoy would fetch it.
        let fetched = try execute("/usr/bin/curl", ["-sf", "-o", crlPath, "http://\(http)/crl"])
        XCTAssertEqual(fetched.status, 0, fetched.stderr)
        let crl = try openssl(["crl", "-inform", "DER", "-in", crlPath, "-noout", "-text", "-CAfile", ca.caDir + "/intermediate.pem"])
        XCTAssertTrue(crl.stderr.contains("verify OK"), crl.stderr)
        XCTAssertTrue(crl.stdout.contains(bad.serial.uppercased()), crl.stdout)
        XCTAssertTrue(crl.stdout.contains("Key Compromise"), crl.stdout)
        XCTAssertFalse(crl.stdout.contains(good.serial.uppercased()), crl.stdout)

        // OCSP: good, revoked with reason, and a serial the CA never issued.
        let ocsp = try openssl(["ocsp", "-issuer", ca.caDir + "/intermediate.pem", "-cert", goodPath, "-cert", badPath,
                                "-serial", "0x0123456789abcdef", "-url", "http://\(http)/ocsp",
                                "-CAfile", ca.caDir + "/root.pem"])
        XCTAssertTrue(ocsp.stderr.contains("Response verify OK"), ocsp.stderr + ocsp.stdout)
        XCTAssertTrue(ocsp.stdout.contains("\(goodPath): good"), ocsp.stdout)
        XCTAssertTrue(ocsp.stdout.contains("\(badPath): revoked"), ocsp.stdout)
        XCTAssertTrue(ocsp.stdout.contains("Reason: keyCompromise"), ocsp.stdout)
        XCTAssertTrue(ocsp.stdout.contains("0x0123456789abcdef: unknown"), ocsp.stdout)

        let garbage = try execute("/usr/bin/curl", ["-s", "-X", "POST", "--data-binary", "garbage",
                                                   "-H", "Content-Type: application/ocsp-request", "-o", ca.root + "/resp.der",
                                                   "http://\(http)/ocsp"])
        XCTAssertEqual(garbage.status, 0)
        let parsed = try openssl(["ocsp", "-respin", ca.root + "/resp.der", "-resp_text", "-noverify"])
        XCTAssertTrue(parsed.stdout.contains("malformedrequest"), parsed.stdout + parsed.stderr)
    }
}
