import Foundation
import GRPCCore
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchSQLiteStore
import XCTest

/// After `vouch ca intermediate rotate`, a real server serves each intermediate's CRL and OCSP
/// answers, checked with the OpenSSL CLI as nginx or a relying party would, and signs audit
/// checkpoints with the new intermediate, which `vouch audit verify` accepts.
final class IssuerCRLProcessTests: XCTestCase {
    func testAuditVerifyAcceptsEachIntermediatesCheckpointsButNotOnePlantedInTheDatabase() async throws {
        let ca = try CAFixture()
        ca.server.stop()  // its last checkpoint: the first intermediate's
        XCTAssertEqual(try vouch("ca", "intermediate", "rotate", "--dir", ca.caDir).status, 0)
        try ca.restartServer()
        _ = try ca.createToken(spiffeID: "spiffe://example.org/svc/later")
        ca.server.stop()  // the new intermediate's
        let store = try SQLiteAuthorityStore(path: ca.caDir + "/vouch.db")
        let signers = Set(try await store.auditCheckpoints().map(\.signer))
        XCTAssertEqual(signers.count, 2, "\(signers)")
        let intact = try vouch("audit", "verify", "--dir", ca.caDir)
        XCTAssertEqual(intact.status, 0, intact.stderr)
        XCTAssertTrue(intact.stdout.contains("audit log intact"), intact.stdout)

        // Whoever can write the database but holds no CA key adds a root and intermediate of their
        // own and signs a checkpoint with it: verify does not take the table's word for it.
        let stranger = try TestCA.material(now: Date())
        let snapshot = try await store.issuers()
        func record(_ kind: IssuerKind, _ state: IssuerState, _ certificate: X509Certificate) -> IssuerRecord {
            IssuerRecord(kind: kind, state: state, serial: certificate.serialHex, der: certificate.der, notBefore: certificate.notBefore,
                         notAfter: certificate.notAfter, keyRef: IssuerRecord.offlineKeyRef, createdAt: Date())
        }
        _ = try await store.changeIssuers(IssuerChange(inserts: [
            .init(record(.root, .pending, stranger.root)),
            .init(record(.intermediate, .retiring, stranger.intermediate), parent: .inserted(0)),
        ]), expectedGeneration: snapshot.generation, audit: [])
        let stored = try await store.auditHead()
        let head = try XCTUnwrap(stored)
        try await store.appendAuditCheckpoint(try AuditCheckpoint.sign(rowID: head.id, hash: head.hash, time: Date(), with: stranger.signer))
        let planted = try vouch("audit", "verify", "--dir", ca.caDir)
        XCTAssertEqual(planted.status, 1)
        XCTAssertTrue(planted.stderr.contains("is not valid: it is signed by certificate \(stranger.intermediate.serialHex)"), planted.stderr)
    }

    func testEachIntermediatesCRLAndOCSPAfterARotationVerifyWithOpenSSL() async throws {
        let ca = try CAFixture()
        let old = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/old"), key: try PrivateKey(generating: .p256))
        _ = try await ca.revoke(old.serial, reason: 1, as: ca.admin)
        ca.server.stop()
        let rotated = try vouch("ca", "intermediate", "rotate", "--dir", ca.caDir)
        XCTAssertEqual(rotated.status, 0, rotated.stderr)
        let oldIssuer = try X509Certificate(pem: try String(contentsOfFile: ca.caDir + "/intermediate.pem", encoding: .utf8))
        let newDirectory = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: ca.caDir + "/issuers").first)
        let newIssuerPath = ca.caDir + "/issuers/\(newDirectory)/certificate.pem"
        let newIssuer = try X509Certificate(pem: try String(contentsOfFile: newIssuerPath, encoding: .utf8))

        let server = try ServerProcess(directory: ca.caDir, extraArguments: ["--http", "127.0.0.1:0"])
        defer { server.stop() }
        XCTAssertTrue(eventually { server.httpAddress != nil }, server.log)
        let http = try XCTUnwrap(server.httpAddress)
        let fixture = try CAFixture(reusing: ca, server: server)
        let freshKey = try PrivateKey(generating: .p256)
        let fresh = try await fixture.enroll(token: try fixture.createToken(spiffeID: "spiffe://example.org/svc/new"), key: freshKey)
        let freshLeaf = try X509Certificate(der: Array(fresh.certificate))
        XCTAssertTrue(freshLeaf.isSigned(by: newIssuer))
        _ = try await fixture.revoke(fresh.serial, reason: 4, as: fixture.admin)

        let dir = ca.root
        for (path, issuerPath, listed, unlisted) in [
            ("/crl/\(oldIssuer.serialHex)", ca.caDir + "/intermediate.pem", old.serial, fresh.serial),
            ("/crl/\(newIssuer.serialHex)", newIssuerPath, fresh.serial, old.serial),
            ("/crl", newIssuerPath, fresh.serial, old.serial),
        ] {
            let fetched = try execute("/usr/bin/curl", ["-sf", "-o", dir + "/crl.der", "http://\(http)\(path)"])
            XCTAssertEqual(fetched.status, 0, "\(path): \(fetched.stderr)")
            let crl = try openssl(["crl", "-inform", "DER", "-in", dir + "/crl.der", "-noout", "-text", "-CAfile", issuerPath])
            XCTAssertTrue(crl.stderr.contains("verify OK"), "\(path): \(crl.stderr)")
            XCTAssertTrue(crl.stdout.contains(listed.uppercased()), "\(path): \(crl.stdout)")
            XCTAssertFalse(crl.stdout.contains(unlisted.uppercased()), "\(path): \(crl.stdout)")
        }
        // One file with both, as nginx's ssl_crl reads it: a leaf of each issuer is found revoked.
        let all = try execute("/usr/bin/curl", ["-sf", "-o", dir + "/all.pem", "http://\(http)/crl/all.pem"])
        XCTAssertEqual(all.status, 0, all.stderr)
        try (oldIssuer.pem + newIssuer.pem + (try String(contentsOfFile: ca.caDir + "/root.pem", encoding: .utf8)))
            .write(toFile: dir + "/chain.pem", atomically: true, encoding: .utf8)
        try freshLeaf.pem.write(toFile: dir + "/fresh.pem", atomically: true, encoding: .utf8)
        let checked = try openssl(["verify", "-crl_check", "-CRLfile", dir + "/all.pem", "-CAfile", dir + "/chain.pem", dir + "/fresh.pem"])
        XCTAssertTrue(checked.stdout.contains("certificate revoked") || checked.stderr.contains("certificate revoked"),
                      checked.stdout + checked.stderr)
        let unknown = try execute("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://\(http)/crl/0123456789abcdef"])
        XCTAssertEqual(unknown.stdout, "404")

        // GetCRL names the issuer it wants and the one that signed.
        var request = Vouch_V1_CRLRequest()
        request.issuer = oldIssuer.serialHex
        let byIssuer = try await fixture.ca(fixture.anonymous) { try await $0.getCRL(request) }
        XCTAssertEqual(byIssuer.issuer, oldIssuer.serialHex)
        XCTAssertTrue(try CertificateRevocationList(der: Array(byIssuer.crl)).isSigned(by: oldIssuer))
        let signing = try await fixture.ca(fixture.anonymous) { try await $0.getCRL(Vouch_V1_CRLRequest()) }
        XCTAssertEqual(signing.issuer, newIssuer.serialHex)
        request.issuer = "0123456789abcdef"
        await assertRPCError(.notFound, "GetCRL of an unknown issuer") {
            try await fixture.ca(fixture.anonymous) { try await $0.getCRL(request) }
        }

        // OCSP: the retiring intermediate answers for its certificate, the new one for its own.
        let oldLeafPath = dir + "/old.pem"
        try X509Certificate(der: Array(old.certificate)).pem.write(toFile: oldLeafPath, atomically: true, encoding: .utf8)
        for (issuerPath, leafPath, reason) in [(ca.caDir + "/intermediate.pem", oldLeafPath, "keyCompromise"),
                                               (newIssuerPath, dir + "/fresh.pem", "superseded")] {
            let ocsp = try openssl(["ocsp", "-issuer", issuerPath, "-cert", leafPath, "-url", "http://\(http)/ocsp",
                                    "-CAfile", ca.caDir + "/root.pem"])
            XCTAssertTrue(ocsp.stderr.contains("Response verify OK"), ocsp.stderr + ocsp.stdout)
            XCTAssertTrue(ocsp.stdout.contains("\(leafPath): revoked") && ocsp.stdout.contains("Reason: \(reason)"), ocsp.stdout)
        }
    }
}
