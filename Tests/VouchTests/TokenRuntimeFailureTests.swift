import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// The PKCS#11 token holding the CA's keys fails under a running server (its files moved away) and
/// comes back: the server answers unavailable and says why, then signs again without a restart.
final class TokenRuntimeFailureTests: XCTestCase {
    func testUnavailableThenRecovers() async throws {
        let ca = try TokenCA()
        let server = try ca.startServer()
        // Two uses: one before the failure, one after. The enrollment refused meanwhile must not use one
        // up; the use, the certificate row and its audit events are one transaction, so none was stored.
        let enrollment = try ca.enrollmentToken(uses: 2, through: server)
        let before = try await ca.enroll(server, token: enrollment)
        XCTAssertEqual(try ca.get(server, "/healthz").status, "200")

        try ca.token.fail()
        do {
            _ = try await ca.enroll(server, token: enrollment)
            XCTFail("enrolled while the token was away")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unavailable, error.message)
            XCTAssertTrue(error.message.hasPrefix("the signing key is unavailable: PKCS#11 token \"vouch-ca\": CKR_"), error.message)
            XCTAssertTrue(error.message.hasSuffix("; retrying"), error.message)
        }
        let failed = "PKCS#11 token \"vouch-ca\" failed: CKR_"
        XCTAssertTrue(eventually { !TokenCA.lines(of: server, containing: failed).isEmpty }, server.log)
        let health = try ca.get(server, "/healthz")
        XCTAssertEqual(health.status, "503")
        // The reason is the failed sign's (CKR_…) or, once recovery was tried, what stopped it ("no token labelled …").
        XCTAssertTrue(health.body.hasPrefix("unhealthy: PKCS#11 token \"vouch-ca\": "), health.body)
        XCTAssertTrue(health.body.contains(" since 20") && health.body.hasSuffix("Z; retrying"), health.body)
        let servingWhileFailed = try await grpcHealth(ca, server)
        XCTAssertEqual(servingWhileFailed, .notServing)
        XCTAssertTrue(try ca.get(server, "/metrics").body.contains("vouch_ca_pkcs11_token_up{token=\"vouch-ca\"} 0"))
        let ocsp = try ca.ocsp(server, for: before)
        XCTAssertTrue(ocsp.contains("Responder Error: trylater (3)"), ocsp)
        let checkpoint = try vouch(["audit", "checkpoint", "--dir", ca.caDir, "--server", server.address], environment: [:])
        XCTAssertNotEqual(checkpoint.status, 0)
        XCTAssertTrue(checkpoint.stderr.contains("the signing key is unavailable: PKCS#11 token \"vouch-ca\""), checkpoint.stderr)
        // A revocation needs no signature; the CRL it calls for cannot be signed, so the last one is served.
        let revoked = try vouch(["cert", "revoke", before.serial, "--dir", ca.caDir, "--server", server.address], environment: [:])
        XCTAssertEqual(revoked.status, 0, revoked.stderr)
        XCTAssertEqual(try ca.get(server, "/crl").status, "200")
        XCTAssertEqual(TokenCA.lines(of: server, containing: "until the token is back").count, 1, server.log)

        try ca.token.restore()
        let restored = Date()
        XCTAssertTrue(eventually(timeout: 5) { (try? ca.get(server, "/healthz").status) == "200" }, server.log)
        let recovery = Date().timeIntervalSince(restored)
        let after = try await ca.enroll(server, token: enrollment)
        XCTAssertTrue(try ca.ocsp(server, for: after).contains(": good"))
        XCTAssertTrue(try ca.ocsp(server, for: before).contains(": revoked"))
        let servingAfter = try await grpcHealth(ca, server)
        XCTAssertEqual(servingAfter, .serving)
        XCTAssertTrue(try ca.get(server, "/metrics").body.contains("vouch_ca_pkcs11_token_up{token=\"vouch-ca\"} 1"))
        XCTAssertEqual(TokenCA.lines(of: server, containing: failed).count, 1, "the failure is logged once: \(server.log)")
        XCTAssertEqual(TokenCA.lines(of: server, containing: "PKCS#11 token \"vouch-ca\" is back after ").count, 1, server.log)
        print("token back: /healthz 200 \(String(format: "%.2f", recovery)) s after its files returned")
    }

    /// The PIN is changed under the running server, then the token fails while nothing signs (the
    /// probe finds it) and comes back: logging in again is refused, and the server never tries
    /// again, even once the PIN it holds is right again.
    func testWrongPINNeverRetried() async throws {
        let ca = try TokenCA()
        let server = try ca.startServer(["--pkcs11-probe-interval", "1s"])
        let enrollment = try ca.enrollmentToken(through: server)
        let changed = try ca.token.pkcs11Tool(["--login", "--pin", ca.token.pin, "--change-pin", "--new-pin", "999999"])
        XCTAssertEqual(changed.status, 0, changed.stderr)

        try ca.token.fail()
        XCTAssertTrue(eventually(timeout: 5) { (try? ca.get(server, "/healthz").status) == "503" }, "found by the probe alone: \(server.log)")
        try ca.token.restore()
        let refused = "PKCS#11 token \"vouch-ca\" refused the PIN (CKR_PIN_INCORRECT); not retried"
        XCTAssertTrue(eventually(timeout: 5) { !TokenCA.lines(of: server, containing: refused).isEmpty }, server.log)
        // Put the old PIN back: a retry would now log in, so staying refused shows there was none.
        let reverted = try ca.token.pkcs11Tool(["--login", "--pin", "999999", "--change-pin", "--new-pin", ca.token.pin])
        XCTAssertEqual(reverted.status, 0, reverted.stderr)
        try await Task.sleep(for: .seconds(2)) // two retry periods of this server
        let health = try ca.get(server, "/healthz")
        XCTAssertEqual(health.status, "503")
        XCTAssertTrue(health.body.hasPrefix("unhealthy: \(refused)"), health.body)
        do {
            _ = try await ca.enroll(server, token: enrollment)
            XCTFail("enrolled after the PIN was refused")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unavailable)
            XCTAssertTrue(error.message.hasSuffix("CKR_PIN_INCORRECT; not retried: the server needs restarting with the right PIN"), error.message)
        }
        XCTAssertEqual(TokenCA.lines(of: server, containing: refused).count, 1, server.log)
        XCTAssertTrue(TokenCA.lines(of: server, containing: "is back after").isEmpty, server.log)
    }

    private func grpcHealth(_ ca: TokenCA, _ server: ServerProcess) async throws -> Grpc_Health_V1_HealthCheckResponse.ServingStatus {
        try await VouchClient.with(server: HostPort(host: "127.0.0.1", port: server.port),
                                   credentials: VouchClient.Credentials(bundlePEMPath: ca.caDir + "/bundle.pem")) {
            try await Grpc_Health_V1_Health.Client(wrapping: $0).check(Grpc_Health_V1_HealthCheckRequest()).status
        }
    }
}
