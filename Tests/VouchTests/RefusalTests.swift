import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchCrypto
import XCTest

/// Each way a request must be refused, with the exact gRPC status a client sees.
final class RefusalTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    func testReusedTokenIsUnauthenticated() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: Self.web)
        _ = try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
        await assertRPCError(.unauthenticated, "second use of a single-use token") {
            try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
        }
    }

    func testExpiredTokenIsUnauthenticated() async throws {
        let ca = try CAFixture()
        // The rule is proved without waiting in CertificateAuthorityRulesTests; here one real second passes.
        let token = try ca.createToken(spiffeID: Self.web, ttl: "1s")
        try await Task.sleep(for: .milliseconds(1050))  // created before createToken returned: expired by now
        await assertRPCError(.unauthenticated, "expired token") {
            try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
        }
        let tokens = try vouch("token", "list", "--dir", ca.caDir, "--server", ca.server.address, "--json")
        let rows = try JSONSerialization.jsonObject(with: Data(tokens.stdout.utf8)) as? [[String: Any]]
        XCTAssertEqual(rows?.first?["uses_consumed"] as? Int, 0, "a refused enrollment consumes nothing")
    }

    func testForgedOrMalformedTokenIsUnauthenticated() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: Self.web)
        let forged = String(token.dropLast(4)) + "AAAA"
        await assertRPCError(.unauthenticated, "right id, wrong secret") {
            try await ca.enroll(token: forged, key: try PrivateKey(generating: .p256))
        }
        await assertRPCError(.unauthenticated, "not a token") {
            try await ca.enroll(token: "hello", key: try PrivateKey(generating: .p256))
        }
        // The real token still works: failed attempts did not consume it.
        _ = try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
    }

    func testTokenAsBearerMetadataIsAccepted() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: Self.web)
        var request = Vouch_V1_EnrollRequest()
        request.csr = Data(try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der)
        let response = try await ca.ca(ca.anonymous) { client in
            try await client.enroll(request, metadata: ["authorization": "Bearer \(token)"], options: VouchClient.options())
        }
        XCTAssertEqual(response.spiffeID, Self.web)
    }

    func testCSRWithBrokenSignatureIsInvalidArgument() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: Self.web)
        var der = try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der
        der[der.count - 3] ^= 0x01  // inside the signature value
        var request = Vouch_V1_EnrollRequest()
        request.token = token
        request.csr = Data(der)
        await assertRPCError(.invalidArgument, "CSR signature does not verify") {
            try await ca.ca(ca.anonymous) { try await $0.enroll(request) }
        }
        request.csr = Data("not a csr".utf8)
        await assertRPCError(.invalidArgument, "garbage CSR") {
            try await ca.ca(ca.anonymous) { try await $0.enroll(request) }
        }
        // Neither attempt used the token.
        _ = try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
    }

    func testSANOutsideTheGrantIsInvalidArgument() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: Self.web, dns: ["web.internal"])
        let key = try PrivateKey(generating: .p256)
        await assertRPCError(.invalidArgument, "DNS name not granted") {
            try await ca.enroll(token: token, key: key, names: SubjectAltNames(dnsNames: ["db.internal"]))
        }
        await assertRPCError(.invalidArgument, "other SPIFFE ID") {
            try await ca.enroll(token: token, key: key, names: SubjectAltNames(uris: ["spiffe://example.org/vouch/admin"]))
        }
        await assertRPCError(.invalidArgument, "IP not granted") {
            try await ca.enroll(token: token, key: key, names: SubjectAltNames(ipAddresses: ["10.1.1.1"]))
        }
        // Inside the grant is fine, and only what was asked is issued.
        let issued = try await ca.enroll(token: token, key: key, names: SubjectAltNames(dnsNames: ["web.internal"]))
        XCTAssertEqual(try X509Certificate(der: Array(issued.certificate)).subjectAltNames.dnsNames, ["web.internal"])
    }

    func testRenewWithoutClientCertificateIsUnauthenticated() async throws {
        let ca = try CAFixture()
        await assertRPCError(.unauthenticated, "renew without a client certificate") {
            try await ca.renew(with: ca.anonymous, newKey: try PrivateKey(generating: .p256))
        }
    }

    func testRenewWithTheSameKeyIsInvalidArgument() async throws {
        let ca = try CAFixture()
        let key = try PrivateKey(generating: .p256)
        let issued = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: key)
        let identity = try ca.writeIdentity(issued, key: key, name: "web")
        await assertRPCError(.invalidArgument, "renewal reusing the key") {
            try await ca.renew(with: identity, newKey: key)
        }
    }

    func testRenewWithARevokedCertificateIsRefused() async throws {
        let ca = try CAFixture()
        let key = try PrivateKey(generating: .p256)
        let issued = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: key)
        let identity = try ca.writeIdentity(issued, key: key, name: "web")

        // One connection opened before the revocation and kept open.
        try await VouchClient.with(server: ca.address, credentials: identity) { client in
            let authority = Vouch_V1_CertificateAuthority.Client(wrapping: client)
            _ = try await authority.getTrustBundle(Vouch_V1_TrustBundleRequest())
            _ = try await ca.revoke(issued.serial, reason: 1, as: ca.admin)
            await assertRPCError(.failedPrecondition, "renew on a connection opened before the revocation", reason: .certificateRevoked) {
                try await authority.renew(try CAFixture.renewRequest(try PrivateKey(generating: .p256)))
            }
        }
        await assertRPCError(.unavailable, "renew on a new connection: refused at the TLS handshake") {
            try await ca.renew(with: identity, newKey: try PrivateKey(generating: .p256))
        }
        XCTAssertTrue(eventually { ca.server.log.contains("certificate \(issued.serial) is revoked") },
                      "the server logs why the handshake failed")
    }

    func testRevokingSomeoneElsesSerialIsPermissionDenied() async throws {
        let ca = try CAFixture()
        let webKey = try PrivateKey(generating: .p256), dbKey = try PrivateKey(generating: .p256)
        let web = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: webKey)
        let db = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/db"), key: dbKey)
        let webIdentity = try ca.writeIdentity(web, key: webKey, name: "web")
        await assertRPCError(.permissionDenied, "web revoking db's certificate") {
            try await ca.revoke(db.serial, as: webIdentity)
        }
        await assertRPCError(.notFound, "unknown serial") {
            try await ca.revoke("0123456789abcdef", as: ca.admin)
        }
        await assertRPCError(.invalidArgument, "not a serial") {
            try await ca.revoke("xyz", as: ca.admin)
        }
        await assertRPCError(.invalidArgument, "reason 7 does not exist") {
            try await ca.revoke(db.serial, reason: 7, as: ca.admin)
        }
        // The admin may revoke it.
        _ = try await ca.revoke(db.serial, as: ca.admin)
    }

    func testAdminServiceNeedsAnAdminIdentity() async throws {
        let ca = try CAFixture()
        let key = try PrivateKey(generating: .p256)
        let web = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: key)
        let identity = try ca.writeIdentity(web, key: key, name: "web")
        var request = Vouch_V1_CreateTokenRequest()
        request.spiffeID = Self.web
        await assertRPCError(.permissionDenied, "a service creating tokens") {
            try await VouchClient.with(server: ca.address, credentials: identity) { try await Vouch_V1_Admin.Client(wrapping: $0).createToken(request) }
        }
        await assertRPCError(.unauthenticated, "an anonymous client creating tokens") {
            try await VouchClient.with(server: ca.address, credentials: ca.anonymous) { try await Vouch_V1_Admin.Client(wrapping: $0).createToken(request) }
        }
        request.spiffeID = "spiffe://other.org/svc/web"
        await assertRPCError(.invalidArgument, "a token for another trust domain") {
            try await VouchClient.with(server: ca.address, credentials: ca.admin) { try await Vouch_V1_Admin.Client(wrapping: $0).createToken(request) }
        }
    }

    func testTLS12ClientIsRefusedAtTheHandshake() throws {
        let ca = try CAFixture()
        let tls12 = try openssl(["s_client", "-connect", ca.server.address, "-tls1_2", "-alpn", "h2",
                                 "-CAfile", ca.caDir + "/bundle.pem"], stdin: Data())
        XCTAssertTrue(tls12.stderr.contains("alert protocol version"), tls12.stderr)
        XCTAssertFalse(tls12.stdout.contains("TLSv1.2, Cipher is ECDHE"), tls12.stdout)

        let tls13 = try openssl(["s_client", "-connect", ca.server.address, "-alpn", "h2",
                                 "-CAfile", ca.caDir + "/bundle.pem"], stdin: Data())
        XCTAssertTrue(tls13.stdout.contains("New, TLSv1.3"), tls13.stdout)
        XCTAssertTrue(tls13.stdout.contains("ALPN protocol: h2"), tls13.stdout)
        XCTAssertTrue(tls13.stdout.contains("Verify return code: 0 (ok)"), tls13.stdout)
    }

    func testPlaintextClientIsUnavailable() async throws {
        let ca = try CAFixture()
        let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: ca.server.port),
                                                       transportSecurity: .plaintext)
        await assertRPCError(.unavailable, "plaintext HTTP/2") {
            try await withGRPCClient(transport: transport) { client in
                try await Vouch_V1_CertificateAuthority.Client(wrapping: client)
                    .getTrustBundle(Vouch_V1_TrustBundleRequest(), options: VouchClient.options(timeout: .seconds(10)))
            }
        }
    }

    func testSecondCAInitRefusesToOverwrite() throws {
        let ca = try CAFixture()
        let before = try String(contentsOfFile: ca.caDir + "/root.pem", encoding: .utf8)
        let again = try vouch("ca", "init", "--dir", ca.caDir, "--trust-domain", "example.org")
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("refusing to overwrite"), again.stderr)
        XCTAssertEqual(try String(contentsOfFile: ca.caDir + "/root.pem", encoding: .utf8), before)
        for key in ["root_key.pem", "intermediate_key.pem", "admin_key.pem", "server_key.pem", "vouch.db"] {
            let mode = try FileManager.default.attributesOfItem(atPath: ca.caDir + "/" + key)[.posixPermissions] as? Int
            XCTAssertEqual(mode, 0o600, key)
        }
    }
}
