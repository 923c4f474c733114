import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// Two real `vouch server` processes on one PostgreSQL database: a certificate revoked through A
/// is enforced by B within a second, everywhere B enforces revocations.
final class ReplicaRevocationProcessTests: XCTestCase {
    func testACertificateRevokedThroughAIsRefusedByBAndPublishedByBWithinASecond() async throws {
        let set = try await ReplicaSet(extraArguments: ["--http", "127.0.0.1:0"])
        let fixture = set.fixture
        let key = try PrivateKey(generating: .p256), spareKey = try PrivateKey(generating: .p256)
        let issued = try await set.enroll(1, token: try set.createToken(spiffeID: "spiffe://example.org/svc/web"), key: key)
        let spare = try await set.enroll(1, token: try set.createToken(spiffeID: "spiffe://example.org/svc/spare"), key: spareKey)
        let identity = try fixture.writeIdentity(issued, key: key, name: "web")
        let events = EventLog()
        let watch = Task {
            try await set.ca(1, fixture.admin) { client in
                try await client.watchRevocations(Vouch_V1_WatchRevocationsRequest()) { response in
                    for try await event in response.messages { _ = events.append(event) }
                }
            }
        }
        defer { watch.cancel() }
        // The stream on B is open once a first revocation through A has come down it.
        _ = try await revoke(spare.serial, through: 0, set)
        XCTAssertTrue(eventually(timeout: 5) { events.events.count == 1 }, "B's stream delivers A's revocations")

        try await VouchClient.with(server: set.address(1), credentials: identity) { client in
            let onB = Vouch_V1_CertificateAuthority.Client(wrapping: client)
            _ = try await onB.getTrustBundle(Vouch_V1_TrustBundleRequest())
            let called = ContinuousClock.now
            let revoked = try await revoke(issued.serial, through: 0, set)
            let committed = ContinuousClock.now
            XCTAssertTrue(eventually(timeout: 5) { events.events.count == 2 }, "B's stream delivers the revocation")
            let latency = ContinuousClock.now - committed
            print("replica revocation latency (processes): \(latency) from A's answer to B's WatchRevocations event"
                  + " (\(ContinuousClock.now - called) from the call)")
            XCTAssertLessThan(latency, .seconds(1))
            XCTAssertEqual(events.events.map(\.serial), [spare.serial, issued.serial], "each once, in order")
            XCTAssertEqual(events.events.last?.sequence, revoked.sequence)
            await assertRPCError(.failedPrecondition, "an RPC on a connection to B opened before the revocation",
                                 reason: .certificateRevoked) {
                try await onB.renew(try CAFixture.renewRequest(try PrivateKey(generating: .p256)))
            }
        }
        await assertRPCError(.unavailable, "a new connection to B: refused at the TLS handshake") {
            try await set.renew(1, as: identity, newKey: try PrivateKey(generating: .p256))
        }
        XCTAssertTrue(eventually { set.replicas[1].log.contains("certificate \(issued.serial) is revoked") }, set.replicas[1].log)

        // B's CRL and OCSP answer, over HTTP as nginx or openssl fetch them.
        let http = try XCTUnwrap(set.replicas[1].httpAddress, set.replicas[1].log)
        let crlPath = fixture.root + "/b.crl", certPath = fixture.root + "/web-leaf.pem"
        let fetched = try execute("/usr/bin/curl", ["-sf", "-o", crlPath, "http://\(http)/crl"])
        XCTAssertEqual(fetched.status, 0, fetched.stderr)
        let crl = try CertificateRevocationList(der: Array(try Data(contentsOf: URL(fileURLWithPath: crlPath))))
        XCTAssertEqual(Set(crl.entries.map { SerialNumber.hex($0.serial) }), [spare.serial, issued.serial])
        try X509Certificate(der: Array(issued.certificate)).pem.write(toFile: certPath, atomically: true, encoding: .utf8)
        let ocsp = try openssl(["ocsp", "-issuer", set.caDir + "/intermediate.pem", "-cert", certPath, "-url", "http://\(http)/ocsp",
                                "-CAfile", set.caDir + "/root.pem"])
        XCTAssertTrue(ocsp.stdout.contains("\(certPath): revoked"), ocsp.stdout + ocsp.stderr)

        // Its listening session does not hold up B's shutdown.
        let stopping = ContinuousClock.now
        XCTAssertEqual(set.replicas[1].stop(), 0, set.replicas[1].log)
        XCTAssertLessThan(ContinuousClock.now - stopping, .seconds(5))
    }

    private func revoke(_ serial: String, through index: Int, _ set: ReplicaSet) async throws -> Vouch_V1_RevokeResponse {
        var request = Vouch_V1_RevokeRequest()
        request.serial = serial
        request.reason = 1
        return try await set.ca(index, set.fixture.admin) { try await $0.revoke(request, options: VouchClient.options()) }
    }
}
