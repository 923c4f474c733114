import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// Dates the API sends come from the database. Someone who can edit it (or a bug) can leave a time
/// no Int64 holds; the next listing must answer with the value clamped, not trap and take the
/// replica down (every replica, on PostgreSQL, at the next listing).
final class DatabaseDateBoundsTests: XCTestCase {
    func testOutOfRangeTimesInTheDatabaseAreClampedNotACrash() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: "spiffe://example.org/svc/far")
        let issued = try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
        let serial = issued.serial
        let database = ca.caDir + "/vouch.db"
        let edited = try execute("/usr/bin/sqlite3", [database,
            "UPDATE certificate SET not_after = 1e300, issued_at = -1e300 WHERE serial = '\(serial)'"])
        XCTAssertEqual(edited.status, 0, edited.stderr)

        let listed = try await VouchClient.with(server: ca.address, credentials: ca.admin) { client in
            var request = Vouch_V1_ListCertificatesRequest()
            request.identity = "spiffe://example.org/svc/far"
            return try await Vouch_V1_Admin.Client(wrapping: client).listCertificates(request, options: VouchClient.options())
        }
        XCTAssertEqual(listed.certificates.map(\.serial), [serial])
        XCTAssertEqual(listed.certificates.first?.notAfter, .max)
        XCTAssertEqual(listed.certificates.first?.issuedAt, .min)
        XCTAssertTrue(ca.server.process.isRunning, "the server survived the listing")
    }

    func testUnixSecondsClampsAtBothEndsAndNaN() {
        XCTAssertEqual(Date(timeIntervalSince1970: 1e300).unixSeconds, .max)
        XCTAssertEqual(Date(timeIntervalSince1970: -1e300).unixSeconds, .min)
        XCTAssertEqual(Date(timeIntervalSince1970: .nan).unixSeconds, 0)
        XCTAssertEqual(Date(timeIntervalSince1970: 1_700_000_000.9).unixSeconds, 1_700_000_000)
        XCTAssertEqual(Date(timeIntervalSince1970: -1.5).unixSeconds, -1)
    }
}
