import Foundation
import GRPCCore
import VouchAPI
import VouchAuthority
import VouchCrypto
import XCTest

/// Hostile or broken clients against a real server: each refusal has an exact
/// status and nothing is stored for a refused call.
final class HostileInputTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    func enrollRequest(token: String, csr: [UInt8]) -> Vouch_V1_EnrollRequest {
        var request = Vouch_V1_EnrollRequest()
        request.token = token
        request.csr = Data(csr)
        return request
    }

    func certificateCount(_ ca: CAFixture, identity: String) throws -> Int {
        let listed = try execute(VouchBinary.path, ["cert", "list", "--identity", identity, "--json", "--dir", ca.caDir,
                                                    "--server", ca.server.address])
        return (try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [Any])?.count ?? -1
    }

    func testConcurrentUsesOfASingleUseTokenLetExactlyOneThrough() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: Self.web)
        let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    do {
                        _ = try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
                        return "ok"
                    } catch let error as RPCError {
                        return "\(error.code)"
                    }
                }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        XCTAssertEqual(outcomes.filter { $0 == "ok" }.count, 1, "\(outcomes)")
        XCTAssertEqual(outcomes.filter { $0 == "\(RPCError.Code.unauthenticated)" }.count, 7, "\(outcomes)")
        XCTAssertEqual(try certificateCount(ca, identity: Self.web), 1)
    }

    func testTokenGuessingIsRateLimitedPerPeer() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: Self.web)
        let prefix = String(token.dropLast(6))
        for attempt in 0..<10 {
            await assertRPCError(.unauthenticated, "guess \(attempt)") {
                try await ca.enroll(token: prefix + String(format: "%06d", attempt), key: try PrivateKey(generating: .p256))
            }
        }
        await assertRPCError(.resourceExhausted, "the 11th attempt within a minute, even with the right token") {
            try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
        }
        XCTAssertEqual(try certificateCount(ca, identity: Self.web), 0, "nothing issued")
    }

    func testUnsupportedKeysAreInvalidArgument() async throws {
        let ca = try CAFixture()
        for (name, options) in [("rsa1024", ["-newkey", "rsa:1024"]), ("p192", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-192"])] {
            let csrPath = ca.root + "/\(name).csr"
            let made = try openssl(["req", "-new", "-nodes", "-keyout", ca.root + "/\(name).key", "-subj", "/O=test",
                                    "-outform", "DER", "-out", csrPath] + options)
            XCTAssertEqual(made.status, 0, made.stderr)
            let csr = try Array(Data(contentsOf: URL(fileURLWithPath: csrPath)))
            let token = try ca.createToken(spiffeID: Self.web)
            await assertRPCError(.invalidArgument, name) {
                try await ca.ca(ca.anonymous) { try await $0.enroll(self.enrollRequest(token: token, csr: csr)) }
            }
        }
        XCTAssertEqual(try certificateCount(ca, identity: Self.web), 0)
    }

    func testEmptyOversizedAndUngrantedWildcardRequestsAreRefused() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: Self.web, dns: ["web.internal"])
        await assertRPCError(.invalidArgument, "empty CSR") {
            try await ca.ca(ca.anonymous) { try await $0.enroll(self.enrollRequest(token: token, csr: [])) }
        }
        await assertRPCError(.invalidArgument, "a 200 KB CSR, over the 16 KiB CSR limit") {
            try await ca.ca(ca.anonymous) { try await $0.enroll(self.enrollRequest(token: token, csr: [UInt8](repeating: 0x30, count: 200_000))) }
        }
        await assertRPCError(.unavailable, "a 2 MB message, over the 1 MiB transport limit: the stream is reset") {
            try await ca.ca(ca.anonymous) { try await $0.enroll(self.enrollRequest(token: token, csr: [UInt8](repeating: 0x30, count: 2_000_000))) }
        }
        await assertRPCError(.invalidArgument, "wildcard not granted") {
            try await ca.enroll(token: token, key: try PrivateKey(generating: .p256), names: SubjectAltNames(dnsNames: ["*.internal"]))
        }
        // None of it used the token.
        _ = try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
    }

    func testForeignAndSelfSignedClientCertificatesAreRefusedAtTheHandshake() async throws {
        let ca = try CAFixture()
        // A self-signed certificate claiming the admin SPIFFE ID.
        let forged = ca.root + "/forged"
        let made = try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                "-keyout", forged + "_key.pem", "-out", forged + ".pem", "-days", "1", "-subj", "/O=Vouch",
                                "-addext", "subjectAltName=URI:spiffe://example.org/vouch/admin"])
        XCTAssertEqual(made.status, 0, made.stderr)
        // The admin of another Vouch CA with the same trust domain name.
        let other = ca.root + "/other"
        XCTAssertEqual(try vouch("ca", "init", "--dir", other, "--trust-domain", "example.org").status, 0)

        var request = Vouch_V1_CreateTokenRequest()
        request.spiffeID = Self.web
        for (what, cert, key) in [("self-signed admin", forged + ".pem", forged + "_key.pem"),
                                  ("foreign CA admin", other + "/admin.pem", other + "/admin_key.pem")] {
            let credentials = VouchClient.Credentials(bundlePEMPath: ca.caDir + "/bundle.pem", certificatePEMPath: cert, keyPEMPath: key)
            await assertRPCError(.unavailable, what) {
                try await VouchClient.with(server: ca.address, credentials: credentials) {
                    try await Vouch_V1_Admin.Client(wrapping: $0).createToken(request, options: VouchClient.options(timeout: .seconds(10)))
                }
            }
        }
        XCTAssertTrue(eventually { ca.server.log.contains("does not chain to a trusted root") }, ca.server.log)
    }

    /// Two certificates signed by this CA's intermediate the way it signs its own, differing only in
    /// their dates: one valid now, one that expired an hour ago. The first is accepted at the
    /// handshake, the second refused by RFC 5280 validation, without waiting for anything to expire.
    func testAnExpiredClientCertificateIsRefusedAtTheHandshake() async throws {
        let ca = try CAFixture()
        let intermediate = try X509Certificate(pem: String(contentsOfFile: ca.caDir + "/intermediate.pem", encoding: .utf8))
        let signer = try CertificateSigner(certificate: intermediate,
                                           key: try PrivateKey(pem: String(contentsOfFile: ca.caDir + "/intermediate_key.pem", encoding: .utf8)))
        func identity(_ name: String, issuedAt now: Date) throws -> (VouchClient.Credentials, serial: String) {
            let issued = try LocalIssuance.issue(signer: signer, spiffeID: Self.web, lifetime: 3600, now: now)
            let certPath = "\(ca.root)/\(name).pem", keyPath = "\(ca.root)/\(name)_key.pem"
            try pemBundle([issued.certificate, intermediate]).write(toFile: certPath, atomically: true, encoding: .utf8)
            try issued.key.pkcs8PEM().write(toFile: keyPath, atomically: true, encoding: .utf8)
            return (VouchClient.Credentials(bundlePEMPath: ca.caDir + "/bundle.pem", certificatePEMPath: certPath, keyPEMPath: keyPath),
                    issued.certificate.serialHex)
        }
        let (valid, _) = try identity("valid", issuedAt: Date())
        let (expired, expiredSerial) = try identity("expired", issuedAt: Date().addingTimeInterval(-7200))
        let bundle = try await ca.ca(valid) { try await $0.getTrustBundle(Vouch_V1_TrustBundleRequest()) }
        XCTAssertFalse(bundle.roots.isEmpty, "the valid certificate is accepted")
        await assertRPCError(.unavailable, "a call with the expired certificate") {
            try await ca.ca(expired) { try await $0.getTrustBundle(Vouch_V1_TrustBundleRequest()) }
        }
        await assertRPCError(.unavailable, "renew with the expired certificate") {
            try await ca.renew(with: expired, newKey: try PrivateKey(generating: .p256))
        }
        XCTAssertTrue(eventually { ca.server.log.contains("certificate \(expiredSerial) does not chain to a trusted root") }, ca.server.log)
    }

    func testHTTP1ClientsAreRefused() throws {
        let ca = try CAFixture()
        let http1 = try execute("/usr/bin/curl", ["-s", "--http1.1", "--cacert", ca.caDir + "/bundle.pem", "-o", "/dev/null",
                                                  "-w", "%{http_code}", "https://\(ca.server.address)/"])
        XCTAssertNotEqual(http1.status, 0, "an HTTP/1.1 client gets no response")
        XCTAssertEqual(http1.stdout, "000")
        // The server keeps serving after it.
        XCTAssertEqual(try vouch("cert", "list", "--dir", ca.caDir, "--server", ca.server.address).status, 0)
    }
}
