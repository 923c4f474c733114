import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// The Admin service through the CLI, as an operator uses it.
final class AdminTests: XCTestCase {
    func json(_ result: CommandResult) throws -> Any {
        XCTAssertEqual(result.status, 0, result.stderr)
        return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
    }

    func testListingFiltersPagesAndTokenRevocation() async throws {
        let ca = try CAFixture()
        let admin = ["--dir", ca.caDir, "--server", ca.server.address]
        var serials: [String] = []
        for name in ["web", "api", "db"] {
            let issued = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/\(name)"),
                                             key: try PrivateKey(generating: .p256), ttl: name == "db" ? 600 : 0)
            serials.append(issued.serial)
        }
        _ = try await ca.revoke(serials[1], reason: 5, as: ca.admin)

        let svc = try json(try execute(VouchBinary.path, ["cert", "list", "--identity", "spiffe://example.org/svc/*", "--json"] + admin)) as? [[String: Any]]
        XCTAssertEqual(svc?.map { $0["serial"] as? String ?? "" }, serials.reversed(), "newest first, glob filter")
        let revoked = try json(try execute(VouchBinary.path, ["cert", "list", "--status", "revoked", "--json"] + admin)) as? [[String: Any]]
        XCTAssertEqual(revoked?.map { $0["serial"] as? String ?? "" }, [serials[1]])
        let expiring = try json(try execute(VouchBinary.path, ["cert", "list", "--expiring-within", "1h", "--json"] + admin)) as? [[String: Any]]
        XCTAssertEqual(expiring?.map { $0["serial"] as? String ?? "" }, [serials[2]])

        // Pages of one, following next_page_token.
        var request = Vouch_V1_ListCertificatesRequest()
        request.pageSize = 1
        var paged: [String] = []
        try await VouchClient.with(server: ca.address, credentials: ca.admin) { client in
            let service = Vouch_V1_Admin.Client(wrapping: client)
            repeat {
                let page = try await service.listCertificates(request)
                XCTAssertLessThanOrEqual(page.certificates.count, 1)
                paged += page.certificates.map(\.serial)
                request.pageToken = page.nextPageToken
            } while !request.pageToken.isEmpty
        }
        XCTAssertEqual(paged.count, 6, "three enrolled, the server and admin certificates, and the listener's own")
        XCTAssertEqual(Array(paged.prefix(3)), serials.reversed())

        // Token revocation: a revoked token cannot enroll.
        let token = try ca.createToken(spiffeID: "spiffe://example.org/svc/late")
        let tokenID = String(token.split(separator: ".")[1])
        let revokedToken = try execute(VouchBinary.path, ["token", "revoke", tokenID] + admin)
        XCTAssertEqual(revokedToken.status, 0, revokedToken.stderr)
        await assertRPCError(.unauthenticated, "enrolling with a revoked token") {
            try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
        }
        let tokens = try json(try execute(VouchBinary.path, ["token", "list", "--json"] + admin)) as? [[String: Any]]
        XCTAssertEqual(tokens?.first { $0["token_id"] as? String == tokenID }?["revoked"] as? Bool, true)

        let shown = try json(try execute(VouchBinary.path, ["cert", "show", serials[1], "--json"] + admin)) as? [String: Any]
        XCTAssertEqual(shown?["revocation_reason"] as? String, "cessationOfOperation")
        XCTAssertTrue((shown?["pem"] as? String ?? "").hasPrefix("-----BEGIN CERTIFICATE-----"))
        let unknown = try execute(VouchBinary.path, ["cert", "show", "00ff", "--json"] + admin)
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue(unknown.stderr.hasPrefix("vouch: notFound"), unknown.stderr)

        let events = try json(try execute(VouchBinary.path, ["audit", "list", "--limit", "1000", "--json"] + admin)) as? [[String: Any]] ?? []
        let actions = Set(events.compactMap { $0["action"] as? String })
        for expected in ["token.revoke", "admin.ListCertificates", "admin.ListTokens", "admin.GetCertificate"] {
            XCTAssertTrue(actions.contains(expected), "\(expected) missing from \(actions)")
        }
    }

    func testCRLDistributionPointIsWrittenWhenConfigured() async throws {
        let ca = try CAFixture()
        ca.server.stop()
        let server = try ServerProcess(directory: ca.caDir, extraArguments: ["--crl-url", "http://ca.internal:8080/crl"])
        let fixture = try CAFixture(reusing: ca, server: server)
        let issued = try await fixture.enroll(token: try fixture.createToken(spiffeID: "spiffe://example.org/svc/web"),
                                              key: try PrivateKey(generating: .p256))
        let path = ca.root + "/leaf.pem"
        try X509Certificate(der: Array(issued.certificate)).pem.write(toFile: path, atomically: true, encoding: .utf8)
        let text = try openssl(["x509", "-in", path, "-noout", "-ext", "crlDistributionPoints"]).stdout
        XCTAssertTrue(text.contains("URI:http://ca.internal:8080/crl"), text)
    }
}
