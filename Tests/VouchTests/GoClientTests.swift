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
        try ExampleClientRun(refusals: ["FailedPrecondition", "Unavailable"])
            .check(command: [client], spiffeID: "spiffe://example.org/go/client")
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
