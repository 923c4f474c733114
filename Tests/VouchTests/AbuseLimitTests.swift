import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// What one identity or one address can cost everyone else: bounded, refused with a clear
/// status, and on the record (log and audit) without flooding either.
final class AbuseLimitTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    func auditRows(_ ca: CAFixture, action: String) throws -> [[String: Any]] {
        let listed = try vouch("audit", "list", "--dir", ca.caDir, "--server", ca.server.address, "--limit", "1000", "--json")
        XCTAssertEqual(listed.status, 0, listed.stderr)
        let rows = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]] ?? []
        return rows.filter { $0["action"] as? String == action }
    }

    func testSelfServiceRevocationsAreLimitedPerIdentity() async throws {
        let base = try CAFixture()
        base.server.stop()
        let ca = try CAFixture(reusing: base, server: try ServerProcess(directory: base.caDir, extraArguments: ["--self-revocation-limit", "2"]))
        let token = try ca.createToken(spiffeID: Self.web, uses: 3)
        var identities: [(String, VouchClient.Credentials)] = []
        for index in 0..<3 {
            let key = try PrivateKey(generating: .p256)
            let issued = try await ca.enroll(token: token, key: key)
            identities.append((issued.serial, try ca.writeIdentity(issued, key: key, name: "web\(index)")))
        }
        _ = try await ca.revoke(identities[0].0, reason: 1, as: identities[0].1)
        _ = try await ca.revoke(identities[1].0, reason: 1, as: identities[1].1)
        await assertRPCError(.resourceExhausted, "a third self-revocation within the day") {
            try await ca.revoke(identities[2].0, reason: 1, as: identities[2].1)
        }
        let refused = try auditRows(ca, action: "refused").filter { ($0["detail"] as? String ?? "").hasPrefix("resourceExhausted") }
        XCTAssertEqual(refused.count, 1, "the refused revocation is audited")
        XCTAssertEqual(refused.first?["actor"] as? String, Self.web)
        // An admin is not limited.
        _ = try await ca.revoke(identities[2].0, reason: 1, as: ca.admin)
    }

    func testRefusalsAreLoggedAndAuditedButAFloodIsBounded() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: Self.web)
        let secret = String(token.split(separator: ".").last!)
        await assertRPCError(.unauthenticated, "a forged secret") {
            try await ca.enroll(token: String(token.dropLast(4)) + "AAAA", key: try PrivateKey(generating: .p256))
        }
        XCTAssertTrue(eventually { ca.server.log.contains("refused") && ca.server.log.contains("vouch.v1.CertificateAuthority/Enroll") },
                      ca.server.log)
        let rows = try auditRows(ca, action: "refused")
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows.first?["subject"] as? String, "vouch.v1.CertificateAuthority/Enroll")
        XCTAssertTrue((rows.first?["detail"] as? String ?? "").hasPrefix("unauthenticated"), "\(rows)")

        // A denied admin call is on the record too.
        let key = try PrivateKey(generating: .p256)
        let web = try ca.writeIdentity(try await ca.enroll(token: token, key: key), key: key, name: "web")
        await assertRPCError(.permissionDenied, "a workload calling the Admin API") {
            try await VouchClient.with(server: ca.address, credentials: web) {
                try await Vouch_V1_Admin.Client(wrapping: $0).listTokens(Vouch_V1_ListTokensRequest())
            }
        }
        XCTAssertEqual(try auditRows(ca, action: "refused").filter { $0["subject"] as? String == "vouch.v1.Admin/ListTokens" }.count, 1)

        // So is a revoked certificate refused at the TLS handshake.
        _ = try await ca.revoke(try X509Certificate(pem: String(contentsOfFile: web.certificatePEMPath!, encoding: .utf8)).serialHex,
                                as: ca.admin)
        await assertRPCError(.unavailable, "a revoked certificate at the handshake") {
            try await ca.renew(with: web, newKey: try PrivateKey(generating: .p256))
        }
        XCTAssertTrue(eventually {
            ((try? self.auditRows(ca, action: "refused")) ?? []).contains {
                $0["subject"] as? String == "TLS handshake" && ($0["detail"] as? String ?? "").contains("is revoked")
            }
        }, "the refused handshake is audited")

        // A flood of 300 bad tokens: every one refused, the log and the audit trail stay bounded.
        try await ca.ca(ca.anonymous) { client in
            for attempt in 0..<300 {
                var request = Vouch_V1_EnrollRequest()
                request.token = "vch.\(String(format: "%016x", attempt)).\(String(repeating: "x", count: 43))"
                await assertRPCError(attempt < 10 ? .unauthenticated : .resourceExhausted, "bad token \(attempt)") {
                    try await client.enroll(request)
                }
            }
        }
        let refusals = try auditRows(ca, action: "refused")
        XCTAssertGreaterThanOrEqual(refusals.count, 50, "the first refusals of the flood are audited")
        XCTAssertLessThanOrEqual(refusals.count, 65, "audit rows for 303 refusals: a burst of 60, then 1 a second, and 1 handshake")
        func enrollRefusalLines() -> Int {
            ca.server.log.components(separatedBy: "\n").filter { $0.contains("vouch.v1.CertificateAuthority/Enroll") }.count
        }
        XCTAssertTrue(eventually { enrollRefusalLines() >= 45 }, "the first refusals of the flood are logged: \(enrollRefusalLines())")
        try await Task.sleep(for: .milliseconds(200))
        XCTAssertLessThanOrEqual(enrollRefusalLines(), 65, "log lines for 303 refusals: a burst of 50, then 5 a second")
        XCTAssertFalse(ca.server.log.contains(secret), "no token secret in the log")
    }

    /// Failures count per address *and* token: neighbours behind one address keep enrolling.
    func testBadTokensFromOneAddressDoNotLockOutAValidToken() async throws {
        let ca = try CAFixture()
        let victim = try ca.createToken(spiffeID: Self.web)
        let target = try ca.createToken(spiffeID: "spiffe://example.org/svc/target")
        let targetPrefix = String(target.dropLast(6))
        for attempt in 0..<10 {
            await assertRPCError(.unauthenticated, "garbage \(attempt)") {
                try await ca.enroll(token: "vch.ffffffffffffffff.\(String(repeating: "g", count: 43))", key: try PrivateKey(generating: .p256))
            }
            await assertRPCError(.unauthenticated, "guess \(attempt) at the target's secret") {
                try await ca.enroll(token: targetPrefix + String(format: "%06d", attempt), key: try PrivateKey(generating: .p256))
            }
        }
        // The brute-force limit holds for the token under attack ...
        await assertRPCError(.resourceExhausted, "the 11th guess at one token within a minute") {
            try await ca.enroll(token: targetPrefix + "zzzzzz", key: try PrivateKey(generating: .p256))
        }
        // ... and a neighbour's valid token from the same address goes through.
        _ = try await ca.enroll(token: victim, key: try PrivateKey(generating: .p256))
    }
}
