import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchCrypto
import VouchTLS
import XCTest

/// A fresh CA directory with a running `vouch server`, and clients for it.
final class CAFixture: @unchecked Sendable {
    let root: String
    let caDir: String
    let trustDomain = "example.org"
    private(set) var server: ServerProcess

    /// - Parameter start: starts the server on the new CA directory (default: on its SQLite database).
    /// - Parameter initArguments: added to `vouch ca init` (e.g. a token's flags), run with `environment` added.
    init(initArguments: [String] = [], environment: [String: String] = [:],
         server start: (_ caDir: String) throws -> ServerProcess = { try ServerProcess(directory: $0) }) throws {
        root = try temporaryDirectory()
        caDir = root + "/ca"
        let initialized = try vouch(["ca", "init", "--dir", caDir, "--trust-domain", trustDomain] + initArguments,
                                    environment: environment)
        guard initialized.status == 0 else { throw CLIFailure("ca init failed: \(initialized.stderr)") }
        server = try start(caDir)
    }

    /// Another view of an existing CA directory whose server runs with other flags.
    init(reusing other: CAFixture, server: ServerProcess) throws {
        root = other.root
        caDir = other.caDir
        self.server = server
        ownsDirectory = false
    }

    private var ownsDirectory = true

    deinit {
        server.stop()
        if ownsDirectory { try? FileManager.default.removeItem(atPath: root) }
    }

    var address: HostPort { HostPort(host: "127.0.0.1", port: server.port) }

    func restartServer() throws {
        XCTAssertEqual(server.stop(), 0, "server should exit cleanly on SIGTERM")
        server = try ServerProcess(directory: caDir)
    }

    /// Starts the server again on the port it had, e.g. after `server.kill()`.
    func startServerOnSamePort() throws {
        server = try ServerProcess(directory: caDir, port: server.port)
    }

    /// `vouch token create`, returning the token from the last stdout line.
    func createToken(spiffeID: String, dns: [String] = [], ips: [String] = [], ttl: String = "15m", uses: Int = 1) throws -> String {
        var arguments = ["token", "create", "--dir", caDir, "--server", server.address, "--spiffe-id", spiffeID,
                         "--ttl", ttl, "--uses", String(uses)]
        for name in dns { arguments += ["--dns", name] }
        for ip in ips { arguments += ["--ip", ip] }
        let result = try execute(VouchBinary.path, arguments)
        guard result.status == 0 else { throw CLIFailure("token create failed: \(result.stderr)") }
        return result.lastLine
    }

    /// Starts `vouch agent` enrolled with a fresh token for `spiffeID` granting localhost/127.0.0.1;
    /// returns it and its output directory.
    func startAgent(spiffeID: String = "spiffe://example.org/svc/web", ttl: String, extra: [String] = []) throws -> (AgentProcess, String) {
        let out = root + "/agent", tokenFile = root + "/token"
        try createToken(spiffeID: spiffeID, dns: ["localhost"], ips: ["127.0.0.1"]).write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let agent = try AgentProcess(arguments: agentArguments(out: out, ttl: ttl) + ["--token-file", tokenFile] + extra)
        return (agent, out)
    }

    func agentArguments(out: String, ttl: String) -> [String] {
        ["--ca", server.address, "--ca-bundle", caDir + "/bundle.pem", "--out", out, "--cert-ttl", ttl]
    }

    var anonymous: VouchClient.Credentials { VouchClient.Credentials(bundlePEMPath: caDir + "/bundle.pem") }

    var admin: VouchClient.Credentials {
        VouchClient.Credentials(bundlePEMPath: caDir + "/bundle.pem", certificatePEMPath: caDir + "/admin.pem",
                                keyPEMPath: caDir + "/admin_key.pem")
    }

    func ca<Result: Sendable>(_ credentials: VouchClient.Credentials,
                              _ body: (Vouch_V1_CertificateAuthority.Client<HTTP2ClientTransport.Posix>) async throws -> Result)
        async throws -> Result {
        try await VouchClient.with(server: address, credentials: credentials) { client in
            try await body(Vouch_V1_CertificateAuthority.Client(wrapping: client))
        }
    }

    func enroll(token: String, key: PrivateKey, names: SubjectAltNames = SubjectAltNames(), ttl: Int64 = 0)
        async throws -> Vouch_V1_CertificateResponse {
        var request = Vouch_V1_EnrollRequest()
        request.token = token
        request.csr = Data(try CertificateSigningRequest.create(key: key, subjectAltNames: names).der)
        request.ttlSeconds = ttl
        return try await ca(anonymous) { try await $0.enroll(request, options: VouchClient.options()) }
    }

    func renew(with credentials: VouchClient.Credentials, newKey: PrivateKey) async throws -> Vouch_V1_CertificateResponse {
        try await ca(credentials) { try await $0.renew(Self.renewRequest(newKey), options: VouchClient.options()) }
    }

    static func renewRequest(_ key: PrivateKey) throws -> Vouch_V1_RenewRequest {
        var request = Vouch_V1_RenewRequest()
        request.csr = Data(try CertificateSigningRequest.create(key: key, subjectAltNames: SubjectAltNames()).der)
        return request
    }

    func revoke(_ serial: String, reason: Int32 = 1, as credentials: VouchClient.Credentials) async throws -> Vouch_V1_RevokeResponse {
        var request = Vouch_V1_RevokeRequest()
        request.serial = serial
        request.reason = reason
        return try await ca(credentials) { try await $0.revoke(request, options: VouchClient.options()) }
    }

    /// Writes an issued certificate (leaf + chain) and its key as PEM files for an mTLS client.
    func writeIdentity(_ response: Vouch_V1_CertificateResponse, key: PrivateKey, name: String) throws -> VouchClient.Credentials {
        let leaf = try X509Certificate(der: Array(response.certificate))
        let chain = try response.chain.map { try X509Certificate(der: Array($0)) }
        let certPath = "\(root)/\(name).pem", keyPath = "\(root)/\(name)_key.pem"
        try pemBundle([leaf] + chain).write(toFile: certPath, atomically: true, encoding: .utf8)
        try key.pkcs8PEM().write(toFile: keyPath, atomically: true, encoding: .utf8)
        return VouchClient.Credentials(bundlePEMPath: caDir + "/bundle.pem", certificatePEMPath: certPath, keyPEMPath: keyPath)
    }
}

/// Asserts that `body` fails with exactly this gRPC status code.
/// With `reason`, the refusal must also carry that `vouch-error-reason` trailer.
func assertRPCError<T>(_ code: RPCError.Code, _ what: String, reason: RefusalReason? = nil, file: StaticString = #filePath,
                       line: UInt = #line, _ body: () async throws -> T) async {
    do {
        _ = try await body()
        XCTFail("\(what): expected \(code), but the call succeeded", file: file, line: line)
    } catch let error as RPCError {
        XCTAssertEqual(error.code, code, "\(what): \(error.message)", file: file, line: line)
        if let reason { XCTAssertEqual(RefusalReason(of: error), reason, "\(what): \(error.metadata)", file: file, line: line) }
    } catch {
        XCTFail("\(what): expected RPCError \(code), got \(error)", file: file, line: line)
    }
}

extension VouchClient.Credentials {
    /// The same credentials for a server that is not the CA, e.g. an agent's listener.
    func expecting(_ spiffeID: String) -> VouchClient.Credentials {
        var credentials = self
        credentials.serverIdentity = .spiffeID(spiffeID)
        return credentials
    }
}
