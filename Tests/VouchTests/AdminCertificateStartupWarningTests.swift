import Foundation
import XCTest

/// A starting server names the admin certificates only `vouch ca admin-cert` can renew.
final class AdminCertificateStartupWarningTests: XCTestCase {
    func testTheServerNamesAnAdminCertificateExpiringWithin30DaysAtStart() throws {
        let ca = try CAFixture()
        let alice = "spiffe://example.org/ops/alice"
        let issued = try vouch("ca", "admin-cert", "--dir", ca.caDir, "--spiffe-id", alice, "--out", ca.root + "/alice", "--ttl", "10d")
        XCTAssertEqual(issued.status, 0, issued.stderr)
        XCTAssertEqual(ca.server.stop(), 0)
        let server = try ServerProcess(directory: ca.caDir, extraArguments: ["--admin-id", alice])
        defer { server.stop() }
        let advice = "renew it with vouch ca admin-cert --dir \(ca.caDir) --spiffe-id \(alice) --out <the directory of its admin.pem>"
        XCTAssertTrue(eventually(timeout: 5) { server.log.contains(advice) }, server.log)
        XCTAssertNotNil(server.log.firstMatch(of: #/admin certificate [0-9a-f]+ of spiffe://example.org/ops/alice expires at /#), server.log)
        XCTAssertFalse(server.log.contains("of spiffe://example.org/vouch/admin "), "the init admin has a year left")
    }
}
