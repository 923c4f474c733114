import Foundation
import XCTest

/// A Go client working from the committed .proto alone: README's protoc command generates package
/// vouchv1, and the example in clients/go (built by scripts/setup-go.sh with Debian's grpc-go)
/// enrolls, renews over mutual TLS and revokes against the real server.
final class GoClientTests: XCTestCase {
    static let repository = PythonClientTests.repository

    func testGoClientEnrollsRenewsAndRevokesOverMutualTLS() throws {
        let client = Self.repository + "/.build/go/bin/vouch-example"
        guard FileManager.default.isExecutableFile(atPath: client) else {
            return XCTFail("no Go client: run scripts/setup-go.sh (scripts/test.sh does)")
        }
        let ca = try CAFixture()
        let spiffeID = "spiffe://example.org/go/client"
        let tokenFile = ca.root + "/go-token", out = ca.root + "/go-identity"
        try ca.createToken(spiffeID: spiffeID).write(toFile: tokenFile, atomically: true, encoding: .utf8)

        let run = try execute(client, ["--ca", ca.server.address, "--bundle", ca.caDir + "/bundle.pem",
                                       "--token-file", tokenFile, "--out", out])
        XCTAssertEqual(run.status, 0, run.stderr)
        let result = try JSONSerialization.jsonObject(with: Data(run.lastLine.utf8)) as? [String: Any] ?? [:]
        let enrolled = result["enrolled"] as? [String: Any] ?? [:]
        let renewed = result["renewed"] as? [String: Any] ?? [:]
        XCTAssertEqual(enrolled["spiffe_id"] as? String, spiffeID)
        XCTAssertEqual(renewed["spiffe_id"] as? String, spiffeID)
        let enrolledSerial = try XCTUnwrap(enrolled["serial"] as? String)
        let renewedSerial = try XCTUnwrap(renewed["serial"] as? String)
        XCTAssertNotEqual(enrolledSerial, renewedSerial)
        XCTAssertEqual((result["revoked"] as? [String: Any])?["serial"] as? String, renewedSerial)
        // Refused on the open connection (failedPrecondition), or at the handshake if it had to reconnect.
        XCTAssertTrue(["FailedPrecondition", "Unavailable"].contains(result["renew_after_revoke"] as? String ?? ""),
                      "revoked certificate was not refused: \(run.stdout)")

        // The CA agrees: the renewal chains to the enrollment and is revoked.
        let shown = try vouch("cert", "show", renewedSerial, "--dir", ca.caDir, "--server", ca.server.address, "--json")
        XCTAssertEqual(shown.status, 0, shown.stderr)
        XCTAssertTrue(shown.stdout.contains(enrolledSerial) && shown.stdout.contains("revoked"), shown.stdout)

        // Standard files: a PKCS#8 key only its owner reads, a chain OpenSSL verifies against the bundle.
        let keyMode = try FileManager.default.attributesOfItem(atPath: out + "/svid_key.pem")[.posixPermissions] as? Int
        XCTAssertEqual(keyMode, 0o600)
        let key = try String(contentsOfFile: out + "/svid_key.pem", encoding: .utf8)
        XCTAssertTrue(key.hasPrefix("-----BEGIN PRIVATE KEY-----"), key)
        let verified = try openssl(["verify", "-CAfile", ca.caDir + "/bundle.pem", "-untrusted", out + "/svid.pem", out + "/svid.pem"])
        XCTAssertTrue(verified.stdout.contains("OK"), verified.stdout + verified.stderr)
    }

    func testTheReadmeProtocCommandGeneratesTheGoClient() throws {
        for plugin in ["protoc-gen-go", "protoc-gen-go-grpc"] where !FileManager.default.isExecutableFile(atPath: "/usr/bin/" + plugin) {
            throw XCTSkip("\(plugin) is not installed (scripts/install-deps.sh installs it)")
        }
        let command = try Self.readmeCommand(startingWith: "protoc -I Sources/VouchAPI")
        XCTAssertTrue(command.contains("--go_out=") && command.contains("--go-grpc_out="), command)

        // Run it where README says to, a checkout, but with the output going to a scratch directory.
        let scratch = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try FileManager.default.createSymbolicLink(atPath: scratch + "/Sources", withDestinationPath: Self.repository + "/Sources")
        let result = try execute("/bin/sh", ["-c", "cd '\(scratch)' && \(command)"])
        XCTAssertEqual(result.status, 0, result.stderr)

        let messages = try String(contentsOfFile: scratch + "/vouchv1/ca.pb.go", encoding: .utf8)
        let services = try String(contentsOfFile: scratch + "/vouchv1/ca_grpc.pb.go", encoding: .utf8)
        XCTAssertTrue(messages.contains("package vouchv1"))
        XCTAssertTrue(messages.contains("type RenewRequest struct"))
        XCTAssertTrue(messages.contains("Csr "))
        XCTAssertTrue(services.contains("func NewCertificateAuthorityClient("))
        XCTAssertTrue(services.contains("Renew(ctx context.Context, in *RenewRequest"))
        XCTAssertTrue(services.contains("func NewAdminClient("))
    }

    /// The shell command in README.md that starts with `prefix`, continuation lines joined.
    static func readmeCommand(startingWith prefix: String) throws -> String {
        let lines = try String(contentsOfFile: repository + "/README.md", encoding: .utf8)
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        var index = try XCTUnwrap(lines.firstIndex { $0.hasPrefix(prefix) }, "README.md has no command starting with \(prefix)")
        var command = lines[index]
        while command.hasSuffix("\\"), index + 1 < lines.count {
            command.removeLast()
            index += 1
            command += " " + lines[index]
        }
        return command
    }
}
