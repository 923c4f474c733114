import Foundation
import XCTest

/// Runs one of the example clients in clients/ (Python, Go) against a real server and checks
/// what they all promise: enroll with a token, renew over mutual TLS with a new key, revoke the
/// renewal, see it refused, and leave standard files behind.
struct ExampleClientRun {
    /// Status names the client prints when its revoked certificate is refused: on the open
    /// connection (failedPrecondition), or at the handshake if it had to reconnect.
    let refusals: Set<String>

    func check(command: [String], spiffeID: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ca = try CAFixture()
        let tokenFile = ca.root + "/client-token", out = ca.root + "/client-identity"
        try ca.createToken(spiffeID: spiffeID).write(toFile: tokenFile, atomically: true, encoding: .utf8)

        let run = try execute(command[0], Array(command.dropFirst()) + [
            "--ca", ca.server.address, "--bundle", ca.caDir + "/bundle.pem", "--token-file", tokenFile, "--out", out])
        XCTAssertEqual(run.status, 0, run.stderr, file: file, line: line)
        let result = try JSONSerialization.jsonObject(with: Data(run.lastLine.utf8)) as? [String: Any] ?? [:]
        let enrolled = result["enrolled"] as? [String: Any] ?? [:]
        let renewed = result["renewed"] as? [String: Any] ?? [:]
        XCTAssertEqual(enrolled["spiffe_id"] as? String, spiffeID, file: file, line: line)
        XCTAssertEqual(renewed["spiffe_id"] as? String, spiffeID, file: file, line: line)
        let enrolledSerial = try XCTUnwrap(enrolled["serial"] as? String, run.stdout, file: file, line: line)
        let renewedSerial = try XCTUnwrap(renewed["serial"] as? String, run.stdout, file: file, line: line)
        XCTAssertNotEqual(enrolledSerial, renewedSerial, file: file, line: line)
        XCTAssertEqual((result["revoked"] as? [String: Any])?["serial"] as? String, renewedSerial, file: file, line: line)
        XCTAssertTrue(refusals.contains(result["renew_after_revoke"] as? String ?? ""),
                      "revoked certificate was not refused: \(run.stdout)", file: file, line: line)

        // The CA's own view agrees: the renewal chains to the enrollment and is revoked.
        let shown = try vouch("cert", "show", renewedSerial, "--dir", ca.caDir, "--server", ca.server.address, "--json")
        XCTAssertEqual(shown.status, 0, shown.stderr, file: file, line: line)
        XCTAssertTrue(shown.stdout.contains(enrolledSerial) && shown.stdout.contains("revoked"), shown.stdout, file: file, line: line)

        // Standard files: a PKCS#8 key only its owner reads, a chain OpenSSL verifies against the bundle.
        let keyMode = try FileManager.default.attributesOfItem(atPath: out + "/svid_key.pem")[.posixPermissions] as? Int
        XCTAssertEqual(keyMode, 0o600, file: file, line: line)
        let key = try String(contentsOfFile: out + "/svid_key.pem", encoding: .utf8)
        XCTAssertTrue(key.hasPrefix("-----BEGIN PRIVATE KEY-----"), key, file: file, line: line)
        let verified = try openssl(["verify", "-CAfile", ca.caDir + "/bundle.pem", "-untrusted", out + "/svid.pem", out + "/svid.pem"])
        XCTAssertTrue(verified.stdout.contains("OK"), verified.stdout + verified.stderr, file: file, line: line)
    }
}
