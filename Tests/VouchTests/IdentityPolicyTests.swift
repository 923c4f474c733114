import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// The CA's own identities are never issued to a workload, and the current profile applies
/// at every issuance, not only when the token was made.
final class IdentityPolicyTests: XCTestCase {
    static let alice = "spiffe://example.org/ops/alice"

    func caWithServer(_ arguments: [String]) throws -> (base: CAFixture, ca: CAFixture) {
        let base = try CAFixture()
        base.server.stop()
        return (base, try CAFixture(reusing: base, server: try ServerProcess(directory: base.caDir, extraArguments: arguments)))
    }

    func testReservedIdentitiesGetNoTokenNorRenewalOnlyAnAdminCommand() async throws {
        let (base, ca) = try caWithServer(["--admin-id", Self.alice])
        defer { withExtendedLifetime(base) {} }
        for id in ["spiffe://example.org/vouch/admin", "spiffe://example.org/vouch/server", "spiffe://example.org/vouch/other", Self.alice] {
            let refused = try vouch("token", "create", "--dir", ca.caDir, "--server", ca.server.address, "--spiffe-id", id)
            XCTAssertNotEqual(refused.status, 0, id)
            XCTAssertTrue(refused.stderr.contains("permissionDenied") && refused.stderr.contains("reserved for the CA and its admins"),
                          refused.stderr)
        }
        await assertRPCError(.permissionDenied, "renewing the admin certificate over the API") {
            try await ca.renew(with: ca.admin, newKey: try PrivateKey(generating: .p256))
        }

        // The explicit way: `vouch ca admin-cert` on the CA host, with the CA key.
        let out = ca.root + "/alice"
        let issued = try vouch("ca", "admin-cert", "--dir", ca.caDir, "--spiffe-id", Self.alice, "--out", out)
        XCTAssertEqual(issued.status, 0, issued.stderr)
        let mode = try FileManager.default.attributesOfItem(atPath: out + "/admin_key.pem")[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)
        let listed = try vouch("cert", "list", "--dir", ca.caDir, "--server", ca.server.address,
                               "--cert", out + "/admin.pem", "--key", out + "/admin_key.pem", "--identity", Self.alice, "--json")
        XCTAssertEqual(listed.status, 0, "alice has the Admin API: \(listed.stderr)")
        XCTAssertTrue(listed.stdout.contains(Self.alice), "the CA records the certificate it issued")
        let again = try vouch("ca", "admin-cert", "--dir", ca.caDir, "--spiffe-id", "spiffe://example.org/ops/bob", "--out", out)
        XCTAssertNotEqual(again.status, 0, "another admin's identity is never overwritten (the same ID renews in place)")
        let server = try vouch("ca", "admin-cert", "--dir", ca.caDir, "--spiffe-id", "spiffe://example.org/vouch/server", "--out", ca.root + "/s")
        XCTAssertNotEqual(server.status, 0, "no command hands out the server identity")
    }

    func testATokenMadeBeforeTheRuleCannotEnrollAReservedIdentity() async throws {
        let ca = try CAFixture()
        let secret = String(repeating: "Q", count: 43), id = "00112233aabbccdd"
        let hash = sha256(Array(secret.utf8)).map { String(format: "%02x", $0) }.joined()
        let now = Date().timeIntervalSince1970
        let inserted = try execute("/usr/bin/sqlite3", [ca.caDir + "/vouch.db", """
            INSERT INTO token (id, secret_hash, spiffe_id, dns_names, ip_addresses, created_at, expires_at, uses_allowed, uses_consumed, revoked)
            VALUES ('\(id)', X'\(hash)', 'spiffe://example.org/vouch/admin', '', '', \(now), \(now + 3600), 1, 0, 0)
            """])
        XCTAssertEqual(inserted.status, 0, inserted.stderr)
        await assertRPCError(.permissionDenied, "enrolling the admin identity with an old token") {
            try await ca.enroll(token: "vch.\(id).\(secret)", key: try PrivateKey(generating: .p256))
        }
        let used = try execute("/usr/bin/sqlite3", [ca.caDir + "/vouch.db", "SELECT uses_consumed FROM token WHERE id = '\(id)'"])
        XCTAssertEqual(used.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "0", "nothing issued, no use consumed")
    }

    func testAProfileNamingAReservedIdentityIsRefusedAtStart() throws {
        let ca = try CAFixture()
        let config = ca.root + "/reserved.yaml"
        try """
            server:
              profiles:
                - name: ops
                  spiffe_ids: ["spiffe://example.org/vouch/admin"]
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let started = try vouch("server", "--dir", ca.caDir, "--listen", "127.0.0.1:0", "--config", config)
        XCTAssertNotEqual(started.status, 0)
        XCTAssertTrue(started.stderr.contains("profile ops names spiffe://example.org/vouch/admin, which is reserved"), started.stderr)
    }

    /// Narrowing a profile takes effect for tokens made before and certificates issued before.
    func testANarrowedProfileAppliesToOldTokensAndRenewals() async throws {
        let base = try CAFixture()
        base.server.stop()
        func profile(_ patterns: String) throws -> String {
            let path = base.root + "/profile-\(UUID().uuidString.prefix(4)).yaml"
            try """
                server:
                  profiles:
                    - name: web
                      spiffe_ids: ["spiffe://example.org/web/*"]
                      dns_names: [\(patterns)]
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        var ca = try CAFixture(reusing: base, server: try ServerProcess(
            directory: base.caDir, extraArguments: ["--config", try profile("\"*.old.example.org\", \"*.new.example.org\"")]))
        let token = try ca.createToken(spiffeID: "spiffe://example.org/web/api", dns: ["api.old.example.org"], uses: 2)
        let key = try PrivateKey(generating: .p256)
        let issued = try await ca.enroll(token: token, key: key)
        let identity = try ca.writeIdentity(issued, key: key, name: "web")

        ca.server.stop()
        ca = try CAFixture(reusing: base, server: try ServerProcess(
            directory: base.caDir, port: ca.server.port, extraArguments: ["--config", try profile("\"*.new.example.org\"")]))
        await assertRPCError(.invalidArgument, "a token made before the profile was narrowed") {
            try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
        }
        await assertRPCError(.invalidArgument, "renewing a certificate with a name the profile no longer allows") {
            try await ca.renew(with: identity, newKey: try PrivateKey(generating: .p256))
        }
    }
}
