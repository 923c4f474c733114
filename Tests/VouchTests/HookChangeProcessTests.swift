import Foundation
import VouchCrypto
import XCTest

/// The real agent runs its `--exec` hook when the CRL changes, not only after a rotation, with
/// `VOUCH_CHANGED` saying which: a server such as nginx reloads the new crl.pem within seconds of
/// `vouch cert revoke`. Debouncing, merging and `--hook-on` are shown in process (RotationHooksTests).
final class HookChangeProcessTests: XCTestCase {
    func testARevocationOfAnotherCertificateAndARotationRunTheHookWithWhatChanged() async throws {
        let ca = try CAFixture()
        // Another workload's certificate, revoked later.
        let other = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/other"),
                                        key: try PrivateKey(generating: .p256))
        // The hook records what changed and how many serials crl.der lists as it runs: the files
        // are on disk before it starts.
        let changes = ca.root + "/changes"
        let hook = #"echo "$VOUCH_CHANGED $(openssl crl -inform DER -in "$VOUCH_DIR/crl.der" -noout -text | grep -c 'Serial Number')" >> "#
            + changes
        // A 5 s certificate renewed at 0.4 of its life rotates about every 2 s; the default 1 s debounce applies.
        let (agent, _) = try ca.startAgent(ttl: "5s", extra: ["--renew-fraction", "0.4", "--exec", hook])
        defer { agent.stop() }
        func lines() -> [String] {
            ((try? String(contentsOfFile: changes, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        func kinds(_ line: String) -> [String] { line.split(separator: " ").first.map { $0.split(separator: ",").map(String.init) } ?? [] }

        // The first CRL is written with the first identity (before a server can start on it), so it runs
        // no hook: the first rotation's hook finds it there, empty.
        XCTAssertTrue(eventually(timeout: 8) { lines().contains { kinds($0).contains("certificate") } }, "\(lines())\n\(agent.log)")
        XCTAssertEqual(lines().first, "certificate 0", "the first CRL, empty, came with the identity: \(lines())")
        // The agent logs the run once the hook's process has exited, just after it wrote the line.
        XCTAssertTrue(eventually(timeout: 3) { agent.log.contains("hooks ran for ") }, agent.log)

        let revoked = try vouch("cert", "revoke", other.serial, "--dir", ca.caDir, "--server", ca.server.address)
        XCTAssertEqual(revoked.status, 0, revoked.stderr)
        let revokedAt = Date()
        XCTAssertTrue(eventually(timeout: 5) { lines().contains { kinds($0).contains("crl") && $0.hasSuffix(" 1") } },
                      "\(lines())\n\(agent.log)")
        let after = Date().timeIntervalSince(revokedAt)
        print("hook ran for the new CRL \(String(format: "%.2f", after)) s after vouch cert revoke")
        XCTAssertLessThan(after, 5)
    }
}
