import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// What an operator's Prometheus sees: counters for issued, renewed, revoked and refused
/// calls, latency histograms, database size and certificates about to expire.
final class ServerMetricsTests: XCTestCase {
    func testMetricsCountIssuedRenewedRevokedAndRefusedCalls() async throws {
        let ca = try CAFixture()
        ca.server.stop()
        let server = try ServerProcess(directory: ca.caDir, extraArguments: ["--http", "127.0.0.1:0"])
        let fixture = try CAFixture(reusing: ca, server: server)
        XCTAssertTrue(eventually { server.log.contains("vouch server http on ") }, server.log)
        let http = server.httpAddress ?? ""

        // Before any call, the certificate counters are already there, at zero.
        let initial = try execute("/usr/bin/curl", ["-sf", "http://\(http)/metrics"]).stdout
        for series in ["vouch_ca_certificates_issued_total 0", "vouch_ca_certificates_renewed_total 0",
                       "vouch_ca_certificates_revoked_total 0"] {
            XCTAssertTrue(initial.split(separator: "\n").contains { $0 == series }, initial)
        }

        // Two enrollments, one renewal, one revocation, two refusals of different kinds.
        let key = try PrivateKey(generating: .p256)
        let first = try await fixture.enroll(token: try fixture.createToken(spiffeID: "spiffe://example.org/svc/a"), key: key, ttl: 1800)
        let second = try await fixture.enroll(token: try fixture.createToken(spiffeID: "spiffe://example.org/svc/b"), key: key, ttl: 86400)
        let identity = try fixture.writeIdentity(first, key: key, name: "a")
        let renewed = try await fixture.renew(with: identity, newKey: try PrivateKey(generating: .p256))
        let renewedSerial = try X509Certificate(der: Array(renewed.certificate)).serialHex
        _ = try await fixture.revoke(renewedSerial, as: fixture.admin)
        await assertRPCError(.unauthenticated, "forged token") {
            _ = try await fixture.enroll(token: "vch.0123456789abcdef.AAAA", key: key)
        }
        await assertRPCError(.invalidArgument, "garbage CSR") {
            var request = Vouch_V1_RenewRequest()
            request.csr = Data([1, 2, 3])
            // From b: a's first certificate was renewed, so the lineage rule would refuse it before its CSR is read.
            let other = try fixture.writeIdentity(second, key: key, name: "b")
            _ = try await fixture.ca(other) { try await $0.renew(request, options: VouchClient.options()) }
        }

        let scrape = try execute("/usr/bin/curl", ["-sf", "http://\(http)/metrics"])
        XCTAssertEqual(scrape.status, 0, scrape.stderr)
        let metrics = scrape.stdout
        func value(_ series: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        XCTAssertEqual(value("vouch_ca_certificates_issued_total"), 2, metrics)
        XCTAssertEqual(value("vouch_ca_certificates_renewed_total"), 1, metrics)
        XCTAssertEqual(value("vouch_ca_certificates_revoked_total"), 1, metrics)
        XCTAssertEqual(value(#"vouch_ca_requests_refused_total{method="Enroll",code="unauthenticated"}"#), 1, metrics)
        XCTAssertEqual(value(#"vouch_ca_requests_refused_total{method="Renew",code="invalidArgument"}"#), 1, metrics)
        XCTAssertNotNil(value(#"vouch_ca_request_duration_seconds_count{method="Enroll"}"#), metrics)
        XCTAssertTrue(metrics.contains(#"vouch_ca_request_duration_seconds_bucket{method="Renew",le="#), metrics)
        // a (30 min) expires within the hour; b (24 h) does not; the renewal of a was revoked.
        XCTAssertEqual(value("vouch_ca_certificates_expiring_within_1h"), 1, metrics)
        XCTAssertEqual(value("vouch_ca_revoked_certificates"), 1, metrics)
        let databaseBytes = try XCTUnwrap(value("vouch_ca_database_bytes"), metrics)
        XCTAssertGreaterThan(databaseBytes, 4096)

        let health = try execute("/usr/bin/curl", ["-s", "-w", " %{http_code}", "http://\(http)/healthz"])
        XCTAssertEqual(health.stdout.split(whereSeparator: \.isWhitespace), ["ok", "200"])
    }
}
