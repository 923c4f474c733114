import Foundation
import VouchCrypto
import XCTest

/// Secrets stay out of logs and off the disk in the clear.
final class SecretHygieneTests: XCTestCase {
    func testNoTokenOrKeyMaterialInTheLogsOfAFullRunAndKeysAre0600() async throws {
        let ca = try CAFixture()
        ca.server.stop()
        let server = try ServerProcess(directory: ca.caDir, extraArguments: ["--log-level", "trace"])
        let fixture = try CAFixture(reusing: ca, server: server)
        // The shortest lifetime the CA issues, renewed at a fifth of it: the run rotates within a second.
        let (agent, out) = try fixture.startAgent(ttl: "5s", extra: ["--renew-fraction", "0.2", "--log-level", "trace",
                                                                     "--log-format", "json"])
        let token = try String(contentsOfFile: ca.root + "/token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let deadline = Date().addingTimeInterval(20)
        while !agent.log.contains("rotated"), Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertTrue(agent.log.contains("rotated"), agent.log)
        XCTAssertEqual(agent.stop(), 0)
        server.stop()

        let logs = server.log + agent.log
        let secret = String(token.split(separator: ".")[2])
        XCTAssertFalse(logs.contains(secret), "token secret in a log")
        for keyFile in [out + "/svid_key.pem", ca.caDir + "/intermediate_key.pem", ca.caDir + "/root_key.pem",
                        ca.caDir + "/server_key.pem", ca.caDir + "/admin_key.pem"] {
            let pem = try String(contentsOfFile: keyFile, encoding: .utf8)
            for line in pem.split(separator: "\n") where !line.hasPrefix("-----") {
                XCTAssertFalse(logs.contains(line), "key material of \(keyFile) in a log")
            }
            let mode = try FileManager.default.attributesOfItem(atPath: keyFile)[.posixPermissions] as? Int
            XCTAssertEqual(mode, 0o600, keyFile)
        }
        // Tokens are stored only as SHA-256 hashes.
        let stored = try execute("/usr/bin/sqlite3", [ca.caDir + "/vouch.db", "SELECT hex(secret_hash) FROM token"]).stdout
        XCTAssertFalse(stored.isEmpty)
        let dump = try execute("/usr/bin/sqlite3", [ca.caDir + "/vouch.db", ".dump"]).stdout
        XCTAssertFalse(dump.contains(secret), "token secret in the database")
        XCTAssertTrue(stored.lowercased().contains(SerialNumber.hex(sha256(Array(secret.utf8))).suffix(40)))
    }
}
