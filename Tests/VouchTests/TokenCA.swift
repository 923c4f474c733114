import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchCrypto
import XCTest

/// A CA directory whose keys `vouch ca init` made in a SoftHSM2 token of its own, and `vouch server`
/// processes signing through it (with `--http` and the token's flags).
final class TokenCA: @unchecked Sendable {
    let root: String
    let caDir: String
    let token: SoftHSMToken
    let trustDomain = "example.org"
    private(set) var servers: [ServerProcess] = []

    /// `--pkcs11-module`, `--pkcs11-token` and `--pkcs11-pin-file` of the token.
    var tokenFlags: [String] {
        ["--pkcs11-module", token.module, "--pkcs11-token", token.label, "--pkcs11-pin-file", token.pinFile]
    }

    init(initArguments: [String] = []) throws {
        root = try temporaryDirectory()
        caDir = root + "/ca"
        token = try SoftHSMToken(in: root)
        let initialized = try vouch(["ca", "init", "--dir", caDir, "--trust-domain", trustDomain] + tokenFlags + initArguments,
                                    environment: token.environment)
        guard initialized.status == 0 else { throw CLIFailure("ca init with a token failed: \(initialized.stderr)") }
    }

    deinit {
        for server in servers { server.stop() }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Starts a server on the CA directory. The token's recovery is retried every second at most
    /// (production: backoff up to 10 s), so a test waits one second for the token's return.
    @discardableResult
    func startServer(_ extraArguments: [String] = []) throws -> ServerProcess {
        let server = try ServerProcess(directory: caDir, extraArguments: ["--http", "127.0.0.1:0", "--pkcs11-longest-retry", "1s"]
                                           + tokenFlags + extraArguments, environment: token.environment)
        servers.append(server)
        return server
    }

    /// `vouch token create` through `server`.
    func enrollmentToken(_ spiffeID: String = "spiffe://example.org/svc/web", uses: Int = 1, through server: ServerProcess) throws -> String {
        let result = try vouch(["token", "create", "--dir", caDir, "--server", server.address, "--spiffe-id", spiffeID,
                                "--ttl", "15m", "--uses", String(uses)], environment: [:])
        guard result.status == 0 else { throw CLIFailure("token create failed: \(result.stderr)") }
        return result.lastLine
    }

    func enroll(_ server: ServerProcess, token: String) async throws -> Vouch_V1_CertificateResponse {
        var request = Vouch_V1_EnrollRequest()
        request.token = token
        request.csr = Data(try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der)
        return try await VouchClient.with(server: HostPort(host: "127.0.0.1", port: server.port),
                                          credentials: VouchClient.Credentials(bundlePEMPath: caDir + "/bundle.pem")) {
            try await Vouch_V1_CertificateAuthority.Client(wrapping: $0).enroll(request, options: VouchClient.options(timeout: .seconds(5)))
        }
    }

    /// GET `path` on `server`'s --http listener: status code and body.
    func get(_ server: ServerProcess, _ path: String) throws -> (status: String, body: String) {
        guard let address = server.httpAddress else { throw CLIFailure("the server has no --http listener") }
        let result = try execute("/usr/bin/curl", ["-s", "-m", "10", "-w", "\n%{http_code}", "http://\(address)\(path)"])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n").trimmingCharacters(in: .newlines))
    }

    /// `openssl ocsp` for the certificate `response` carries, asked of `server`: its output.
    func ocsp(_ server: ServerProcess, for response: Vouch_V1_CertificateResponse) throws -> String {
        let leaf = root + "/ocsp-leaf.pem", issuer = root + "/ocsp-issuer.pem"
        try PEM.encode(Array(response.certificate), label: "CERTIFICATE").write(toFile: leaf, atomically: true, encoding: .utf8)
        try PEM.encode(Array(response.chain[0]), label: "CERTIFICATE").write(toFile: issuer, atomically: true, encoding: .utf8)
        let result = try openssl(["ocsp", "-issuer", issuer, "-cert", leaf, "-url", "http://\(server.httpAddress ?? "")/ocsp",
                                  "-CAfile", caDir + "/bundle.pem"])
        return result.stdout + result.stderr
    }

    /// Lines of `server`'s log containing `text`.
    static func lines(of server: ServerProcess, containing text: String) -> [Substring] {
        server.log.split(separator: "\n").filter { $0.contains(text) }
    }
}
