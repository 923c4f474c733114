import Foundation
import VouchAPI
import VouchCrypto
import XCTest

/// Two replicas on one PostgreSQL database sign with one SoftHSM2 token's keys, and both follow a
/// rotation whose new key is made in the token while they run.
final class TokenReplicaTests: XCTestCase {
    func testReplicasShareTheTokenAndSignWithARotatedKeyWithoutRestart() async throws {
        let database = TestPostgres.url(of: try await TestPostgres.shared.freshDatabase())
        let ca = try TokenCA()
        let replicas = [try ca.startServer(["--database", database]), try ca.startServer(["--database", database])]
        let enrollment = try ca.enrollmentToken(uses: 4, through: replicas[0])
        var initial: [X509Certificate] = []
        for replica in replicas {
            let issued = try await ca.enroll(replica, token: enrollment)
            initial.append(try X509Certificate(der: Array(issued.chain[0])))
            XCTAssertTrue(try X509Certificate(der: Array(issued.certificate)).isSigned(by: initial.last!))
        }
        XCTAssertEqual(initial[0].der, initial[1].der)

        let rotated = try vouch(["ca", "intermediate", "rotate", "--dir", ca.caDir, "--database", database] + ca.tokenFlags,
                                environment: ca.token.environment)
        XCTAssertEqual(rotated.status, 0, rotated.stderr)
        for replica in replicas {
            XCTAssertTrue(eventually(timeout: 5) { !TokenCA.lines(of: replica, containing: "switched signing to intermediate").isEmpty },
                          replica.log)
            let issued = try await ca.enroll(replica, token: enrollment)
            let issuer = try X509Certificate(der: Array(issued.chain[0]))
            XCTAssertNotEqual(issuer.der, initial[0].der, "signed with the rotated intermediate")
            XCTAssertTrue(try X509Certificate(der: Array(issued.certificate)).isSigned(by: issuer))
            XCTAssertTrue(replica.log.contains("switched signing to intermediate \(issuer.serialHex)"), replica.log)
        }
    }
}
