import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// The root's CRL as a relying party that checks the whole chain (OpenSSL's CRL_CHECK_ALL, as
/// nginx, HAProxy and PostgreSQL do) gets it from a real server: `/crl/<root serial>`,
/// `/crl/all.pem`, GetCRL and the trust bundle, checked with the OpenSSL CLI.
final class RootCRLProcessTests: XCTestCase {
    func testAllPEMCompletesTheChainOfAnAgentsLeafForCRLCheckAll() async throws {
        let ca = try CAFixture { try ServerProcess(directory: $0, extraArguments: ["--http", "127.0.0.1:0"]) }
        let (agent, out) = try ca.startAgent(ttl: "1h")
        defer { _ = agent.stop() }
        XCTAssertTrue(eventually(timeout: 10) { FileManager.default.fileExists(atPath: out + "/svid.pem") }, agent.log)
        let http = try XCTUnwrap(ca.server.httpAddress, ca.server.log)
        let root = try X509Certificate(pem: try String(contentsOfFile: ca.caDir + "/root.pem", encoding: .utf8))
        let dir = ca.root

        // The root's own CRL, signed by `ca init`.
        let fetched = try execute("/usr/bin/curl", ["-sf", "-o", dir + "/root.crl", "http://\(http)/crl/\(root.serialHex)"])
        XCTAssertEqual(fetched.status, 0, fetched.stderr)
        let crl = try openssl(["crl", "-inform", "DER", "-in", dir + "/root.crl", "-noout", "-CAfile", ca.caDir + "/root.pem"])
        XCTAssertTrue(crl.stderr.contains("verify OK"), crl.stderr + crl.stdout)
        let der = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/root.crl")))
        XCTAssertEqual(try CertificateRevocationList(der: der).number, 1)

        // all.pem: the intermediate's CRL, then the root's; with it the agent's leaf verifies, without the root's it does not.
        XCTAssertEqual(try execute("/usr/bin/curl", ["-sf", "-o", dir + "/all.pem", "http://\(http)/crl/all.pem"]).status, 0)
        let all = try String(contentsOfFile: dir + "/all.pem", encoding: .utf8)
        XCTAssertEqual(all.components(separatedBy: "-----BEGIN X509 CRL-----").count - 1, 2, all)
        XCTAssertTrue(all.hasSuffix(PEM.encode(der, label: "X509 CRL")), "the root's CRL comes last")
        let verify = ["verify", "-crl_check_all", "-CAfile", out + "/bundle.pem", "-untrusted", out + "/chain.pem"]
        let passed = try openssl(verify + ["-CRLfile", dir + "/all.pem", out + "/svid.pem"])
        XCTAssertEqual(passed.status, 0, passed.stdout + passed.stderr)
        XCTAssertTrue(passed.stdout.contains("svid.pem: OK"), passed.stdout + passed.stderr)
        XCTAssertEqual(try execute("/usr/bin/curl", ["-sf", "-o", dir + "/intermediate.crl", "http://\(http)/crl"]).status, 0)
        XCTAssertEqual(try openssl(["crl", "-inform", "DER", "-in", dir + "/intermediate.crl", "-out", dir + "/intermediate-only.pem"]).status, 0)
        let failed = try openssl(verify + ["-CRLfile", dir + "/intermediate-only.pem", out + "/svid.pem"])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue((failed.stdout + failed.stderr).contains("error 3 at 1 depth lookup: unable to get certificate CRL"), failed.stdout + failed.stderr)

        // GetCRL with the root's serial and the trust bundle carry the same DER.
        var request = Vouch_V1_CRLRequest()
        request.issuer = root.serialHex
        let answer = try await ca.ca(ca.anonymous) { try await $0.getCRL(request) }
        XCTAssertEqual(answer.issuer, root.serialHex)
        XCTAssertEqual(Array(answer.crl), der)
        XCTAssertEqual(answer.crlNumber, 1)
        let bundle = try await ca.ca(ca.anonymous) { try await $0.getTrustBundle(Vouch_V1_TrustBundleRequest()) }
        XCTAssertEqual(bundle.rootCrls, [Data(der)])
        let metrics = try execute("/usr/bin/curl", ["-sf", "http://\(http)/metrics"]).stdout
        XCTAssertTrue(metrics.contains("vouch_ca_root_crl_expires_in_seconds{root=\"\(root.serialHex)\"} 3153"), metrics)

        // `vouch ca root crl` next to the running server: served within 2 s.
        let signed = try vouch("ca", "root", "crl", "--dir", ca.caDir, "--next-update", "30d")
        XCTAssertEqual(signed.status, 0, signed.stderr)
        XCTAssertTrue(signed.stdout.hasPrefix("root CRL of \(root.serialHex): number 2, 0 revoked, next update ")
                      && signed.stdout.hasSuffix(" (run this again before then)\n"), signed.stdout)
        XCTAssertTrue(eventually(timeout: 3) {
            (try? execute("/usr/bin/curl", ["-sf", "-o", dir + "/root2.crl", "http://\(http)/crl/\(root.serialHex)"]).status) == 0
                && (try? CertificateRevocationList(der: Array(Data(contentsOf: URL(fileURLWithPath: dir + "/root2.crl")))))?.number == 2
        }, ca.server.log)
        let status = try vouch("ca", "root", "status", "--dir", ca.caDir, "--json")
        let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        let rootCRLs = try XCTUnwrap(object?["root_crls"] as? [[String: Any]], status.stdout)
        XCTAssertEqual(rootCRLs.map { "\($0["serial"] ?? "") \($0["number"] ?? "")" }, ["\(root.serialHex) 2"])

        for (arguments, refusal) in [(["--next-update", "401d"], "vouch: --next-update must be between 1d and 400d"),
                                     (["--root-key", ca.caDir + "/intermediate_key.pem"],
                                      "vouch: --root-key \(ca.caDir)/intermediate_key.pem is not the key of any current root")] {
            let refused = try execute(VouchBinary.path, ["ca", "root", "crl", "--dir", ca.caDir] + arguments)
            XCTAssertEqual(refused.status, 1)
            XCTAssertEqual(refused.stderr, refusal + "\n")
        }
    }

    func testARevokedIntermediateFailsAtDepthOneForCRLCheckAll() async throws {
        let ca = try CAFixture { try ServerProcess(directory: $0, extraArguments: ["--http", "127.0.0.1:0"]) }
        let http = try XCTUnwrap(ca.server.httpAddress, ca.server.log)
        let dir = ca.root
        let key = try PrivateKey(generating: .p256)
        let enrolled = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/web"), key: key)
        let first = try X509Certificate(der: Array(try XCTUnwrap(enrolled.chain.first)))
        try X509Certificate(der: Array(enrolled.certificate)).pem.write(toFile: dir + "/leaf.pem", atomically: true, encoding: .utf8)
        try first.pem.write(toFile: dir + "/chain.pem", atomically: true, encoding: .utf8)
        // What a relying party holds from before: the first intermediate's CRL (its old root CRL it replaces).
        XCTAssertEqual(try execute("/usr/bin/curl", ["-sf", "-o", dir + "/before.crl", "http://\(http)/crl/\(first.serialHex)"]).status, 0)
        XCTAssertEqual(try openssl(["crl", "-inform", "DER", "-in", dir + "/before.crl", "-out", dir + "/before.pem"]).status, 0)

        let rotated = try vouch("ca", "intermediate", "rotate", "--dir", ca.caDir)
        XCTAssertEqual(rotated.status, 0, rotated.stderr)
        // admin.pem is under it too (IssuerCommandTests: refused without --force).
        let revoked = try vouch("ca", "intermediate", "revoke", first.serialHex, "--dir", ca.caDir, "--reason", "keyCompromise", "--force")
        XCTAssertEqual(revoked.status, 0, revoked.stderr)
        XCTAssertTrue(revoked.stdout.hasPrefix("revoked intermediate \(first.serialHex) (keyCompromise): root CRL of "), revoked.stdout)
        XCTAssertTrue(revoked.stdout.contains("live certificates of it can no longer renew: give their agents new tokens"), revoked.stdout)

        // The root's third CRL (init, rotate, revoke) lists it; the server stops publishing the revoked intermediate's.
        XCTAssertTrue(eventually(timeout: 3) {
            (try? execute("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://\(http)/crl/\(first.serialHex)"]).stdout) == "410"
        }, ca.server.log)
        XCTAssertEqual(try execute("/usr/bin/curl", ["-sf", "-o", dir + "/after.pem", "http://\(http)/crl/all.pem"]).status, 0)
        let crls = try String(contentsOfFile: dir + "/before.pem", encoding: .utf8) + (try String(contentsOfFile: dir + "/after.pem", encoding: .utf8))
        try crls.write(toFile: dir + "/crls.pem", atomically: true, encoding: .utf8)
        let result = try openssl(["verify", "-crl_check_all", "-CRLfile", dir + "/crls.pem", "-CAfile", ca.caDir + "/root.pem",
                                  "-untrusted", dir + "/chain.pem", dir + "/leaf.pem"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue((result.stdout + result.stderr).contains("error 23 at 1 depth lookup: certificate revoked"), result.stdout + result.stderr)
    }
}
