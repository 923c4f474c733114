import Foundation
import GRPCCore
import VouchCrypto
import XCTest

/// `--config FILE`: server and agent read their section of one YAML file, flags override it,
/// profiles restrict what each family of identities may get, and mistakes are named.
final class ConfigFileTests: XCTestCase {
    private func write(_ text: String, in directory: String, name: String = "vouch.yaml") throws -> String {
        let path = directory + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testProfilesFromTheConfigFileGovernTokensKeysAndLifetimes() async throws {
        let base = try CAFixture()
        base.server.stop()
        // dir and listen in the file are wrong on purpose: the --dir/--listen flags must win.
        let config = try write("""
            server:
              dir: /nonexistent/vouch-ca
              listen: 127.0.0.1:1
              max_ttl: 168h
              log_format: json
              profiles:
                - name: web
                  spiffe_ids: ["spiffe://example.org/web/*"]
                  dns_names: ["*.web.example.org"]
                  default_ttl: 10m
                  max_ttl: 1h
                  key_types: [p256]
                - name: batch
                  spiffe_ids: ["spiffe://example.org/batch/?"]
            """, in: base.root)
        let server = try ServerProcess(directory: base.caDir, extraArguments: ["--config", config])
        let ca = try CAFixture(reusing: base, server: server)
        XCTAssertTrue(eventually { server.log.contains("\"message\":\"listening\"") || server.log.contains("\"listening\"") },
                      "log_format from the file: \(server.log)")

        // Token creation checks the profile: unknown identities and ungranted DNS names are refused.
        for (id, dns, reason) in [("spiffe://example.org/other/x", "", "no profile allows SPIFFE ID"),
                                  ("spiffe://example.org/web/api", "evil.example.com", "profile web does not allow DNS name"),
                                  ("spiffe://example.org/batch/long", "", "no profile allows SPIFFE ID")] {
            var arguments = ["token", "create", "--dir", ca.caDir, "--server", server.address, "--spiffe-id", id]
            if !dns.isEmpty { arguments += ["--dns", dns] }
            let refused = try execute(VouchBinary.path, arguments)
            XCTAssertNotEqual(refused.status, 0, "\(id) \(dns)")
            XCTAssertTrue(refused.stderr.contains("invalidArgument") && refused.stderr.contains(reason), refused.stderr)
        }

        // Key types: web takes P-256 only.
        let webToken = try ca.createToken(spiffeID: "spiffe://example.org/web/api", dns: ["api.web.example.org"], uses: 3)
        await assertRPCError(.invalidArgument, "P-384 key for the web profile") {
            _ = try await ca.enroll(token: webToken, key: try PrivateKey(generating: .p384))
        }
        // Lifetimes: a 48 h request is capped at the profile's 1 h; no request gets its 10 min default.
        let capped = try X509Certificate(der: Array(try await ca.enroll(token: webToken, key: try PrivateKey(generating: .p256),
                                                                        ttl: 48 * 3600).certificate))
        XCTAssertEqual(capped.notAfter.timeIntervalSince(Date()), 3600, accuracy: 30)
        let defaulted = try X509Certificate(der: Array(try await ca.enroll(token: webToken, key: try PrivateKey(generating: .p256)).certificate))
        XCTAssertEqual(defaulted.notAfter.timeIntervalSince(Date()), 600, accuracy: 30)
        XCTAssertEqual(defaulted.subjectAltNames.dnsNames, ["api.web.example.org"])

        // batch has no key restriction and the server's lifetimes (24 h default).
        let batchToken = try ca.createToken(spiffeID: "spiffe://example.org/batch/7")
        let batch = try X509Certificate(der: Array(try await ca.enroll(token: batchToken, key: try PrivateKey(generating: .p384)).certificate))
        XCTAssertEqual(batch.notAfter.timeIntervalSince(Date()), 24 * 3600, accuracy: 30)
    }

    func testMistakesInTheConfigFileAreNamedInOneLine() throws {
        let ca = try CAFixture()
        let cases: [(String, String)] = [
            ("server:\n  listn: 127.0.0.1:9\n", "unknown key server.listn"),
            ("server:\n  max_ttl: forever\n", "config key server.max_ttl"),
            ("server:\n  profiles:\n    - name: web\n      spiffe_ids: [\"spiffe://example.org/web/*\"]\n      key_types: [dsa]\n",
             "profile web: unknown key type dsa"),
            ("server:\n  profiles:\n    - name: elsewhere\n      spiffe_ids: [\"spiffe://other.org/*\"]\n",
             "outside trust domain example.org"),
            ("server: [1, 2\n", "not valid YAML"),
        ]
        for (index, (text, message)) in cases.enumerated() {
            let path = try write(text, in: ca.root, name: "bad-\(index).yaml")
            let result = try execute(VouchBinary.path, ["server", "--config", path, "--dir", ca.caDir, "--listen", "127.0.0.1:0"])
            XCTAssertNotEqual(result.status, 0, text)
            XCTAssertTrue(result.stderr.contains(message), "\(text): \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line: \(result.stderr)")
        }
        let missing = try execute(VouchBinary.path, ["agent", "--config", ca.root + "/none.yaml"])
        XCTAssertTrue(missing.stderr.contains("cannot read config file"), missing.stderr)
        let empty = try write("agent:\n  cert_ttl: 30s\n", in: ca.root, name: "agent-empty.yaml")
        let incomplete = try execute(VouchBinary.path, ["agent", "--config", empty])
        XCTAssertTrue(incomplete.stderr.contains("--ca is required (or agent.ca in --config)"), incomplete.stderr)
    }

    func testAgentTakesItsSectionAndFlagsOverrideIt() throws {
        let ca = try CAFixture()
        let tokenFile = ca.root + "/token", out = ca.root + "/from-flag"
        try ca.createToken(spiffeID: "spiffe://example.org/svc/cfg").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let config = try write("""
            agent:
              ca: \(ca.server.address)
              ca_bundle: \(ca.caDir)/bundle.pem
              token_file: \(tokenFile)
              out: \(ca.root)/from-file
              cert_ttl: 30s
            """, in: ca.root)
        let agent = try AgentProcess(arguments: ["--config", config, "--out", out])
        defer { agent.stop() }
        XCTAssertTrue(eventually { FileManager.default.fileExists(atPath: out + "/svid.pem") }, agent.log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ca.root + "/from-file"), "--out must override agent.out")
        let certificate = try X509Certificate(pem: try String(contentsOfFile: out + "/svid.pem", encoding: .utf8))
        XCTAssertEqual(certificate.spiffeID, "spiffe://example.org/svc/cfg")
        XCTAssertEqual(certificate.notAfter.timeIntervalSince(Date()), 30, accuracy: 10, "cert_ttl from the file")
    }
}
