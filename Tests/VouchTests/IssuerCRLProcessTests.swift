import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// After `vouch ca intermediate rotate`, a real server serves each intermediate's CRL and OCSP
/// answers, checked with the OpenSSL CLI as nginx or a relying party would.
final class IssuerCRLProcessTests: XCTestCase {
    func testEachIntermediatesCRLAndOCSPAfterARotationVerifyWithOpenSSL() async throws {
        let ca = try CAFixture()
        let old = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/old"), key: try PrivateKey(generating: .p256))
        _ = try await ca.revoke(old.serial, reason: 1, as: ca.admin)
        ca.server.stop()
        let rotated = try vouch("ca", "intermediate", "rotate", "--dir", ca.caDir)
        XCTAssertEqual(rotated.status, 0, rotated.stderr)
        let oldIssuer = try X509Certificate(pem: try String(contentsOfFile: ca.caDir + "/intermediate.pem", encoding: .utf8))
        let newDirectory = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: ca.caDir + "/issuers").first)
        let newIssuerPath = ca.caDir + "/issuers/\(newDirectory)/certificate.pem"
        let newIssuer = try X509Certificate(pem: try String(contentsOfFile: newIssuerPath, encoding: .utf8))

        let server = try ServerProcess(directory: ca.caDir, extraArguments: ["--http", "127.0.0.1:0"])
        defer { server.stop() }
        XCTAssertTrue(eventually { server.httpAddress != nil }, server.log)
        let http = try XCTUnwrap(server.httpAddress)
        let fixture = try CAFixture(reusing: ca, server: server)
        let freshKey = try PrivateKey(generating: .p256)
        let fresh = try await fixture.enroll(token: try fixture.createToken(spiffeID: "spiffe://example.org/svc/new"), key: freshKey)
        let freshLeaf = try X509Certificate(der: Array(fresh.certificate))
        XCTAssertTrue(freshLeaf.isSigned(by: newIssuer))
        _ = try await fixture.revoke(fresh.serial, reason: 4, as: fixture.admin)

        let dir = ca.root
        for (path, issuerPath, listed, unlisted) in [
            ("/crl/\(oldIssuer.serialHex)", ca.caDir + "/intermediate.pem", old.serial, fresh.serial),
            ("/crl/\(newIssuer.serialHex)", newIssuerPath, fresh.serial, old.serial),
            ("/crl", newIssuerPath, fresh.serial, old.serial),
        ] {
            let fetched = try execute("/usr/bin/curl", ["-sf", "-o", dir + "/crl.der", "http://\(http)\(path)"])
            XCTAssertEqual(fetched.status, 0, "\(path): \(fetched.stderr)")
            let crl = try openssl(["crl", "-inform", "DER", "-in", dir + "/crl.der", "-noout", "-text", "-CAfile", issuerPath])
            XCTAssertTrue(crl.stderr.contains("verify OK"), "\(path): \(crl.stderr)")
            XCTAssertTrue(crl.stdout.contains(listed.uppercased()), "\(path): \(crl.stdout)")
            XCTAssertFalse(crl.stdout.contains(unlisted.uppercased()), "\(path): \(crl.stdout)")
        }
        // One file with both, as nginx's ssl_crl reads it: a leaf of each issuer is found revoked.
        let all = try execute("/usr/bin/curl", ["-sf", "-o", dir + "/all.pem", "http://\(http)/crl/all.pem"])
        XCTAssertEqual(all.status, 0, all.stderr)
        try (oldIssuer.pem + newIssuer.pem + (try String(contentsOfFile: ca.caDir + "/root.pem", encoding: .utf8)))
            .write(toFile: dir + "/chain.pem", atomically: true, encoding: .utf8)
        try freshLeaf.pem.write(toFile: dir + "/fresh.pem", atomically: true, encoding: .utf8)
        let checked = try openssl(["verify", "-crl_check", "-CRLfile", dir + "/all.pem", "-CAfile", dir + "/chain.pem", dir + "/fresh.pem"])
        XCTAssertTrue(checked.stdout.contains("certificate revoked") || checked.stderr.contains("certificate revoked"),
                      checked.stdout + checked.stderr)
        let unknown = try execute("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://\(http)/crl/0123456789abcdef"])
        XCTAssertEqual(unknown.stdout, "404")

        // GetCRL names the issuer it wants and the one that signed.
        var request = Vouch_V1_CRLRequest()
        request.issuer = oldIssuer.serialHex
        let byIssuer = try await fixture.ca(fixture.anonymous) { try await $0.getCRL(request) }
        XCTAssertEqual(byIssuer.issuer, oldIssuer.serialHex)
        XCTAssertTrue(try CertificateRevocationList(der: Array(byIssuer.crl)).isSigned(by: oldIssuer))
        let signing = try await fixture.ca(fixture.anonymous) { try await $0.getCRL(Vouch_V1_CRLRequest()) }
        XCTAssertEqual(signing.issuer, newIssuer.serialHex)
        request.issuer = "0123456789abcdef"
        await assertRPCError(.notFound, "GetCRL of an unknown issuer") {
            try await fixture.ca(fixture.anonymous) { try await $0.getCRL(request) }
        }

        // OCSP: the retiring intermediate answers for its certificate, the new one for its own.
        let oldLeafPath = dir + "/old.pem"
        try X509Certificate(der: Array(old.certificate)).pem.write(toFile: oldLeafPath, atomically: true, encoding: .utf8)
        for (issuerPath, leafPath, reason) in [(ca.caDir + "/intermediate.pem", oldLeafPath, "keyCompromise"),
                                               (newIssuerPath, dir + "/fresh.pem", "superseded")] {
            let ocsp = try openssl(["ocsp", "-issuer", issuerPath, "-cert", leafPath, "-url", "http://\(http)/ocsp",
                                    "-CAfile", ca.caDir + "/root.pem"])
            XCTAssertTrue(ocsp.stderr.contains("Response verify OK"), ocsp.stderr + ocsp.stdout)
            XCTAssertTrue(ocsp.stdout.contains("\(leafPath): revoked") && ocsp.stdout.contains("Reason: \(reason)"), ocsp.stdout)
        }
    }
}
