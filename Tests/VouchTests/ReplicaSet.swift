import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchCrypto
import XCTest

/// One CA directory served by several `vouch server` replicas on one PostgreSQL database, and
/// clients that pick a replica per call.
final class ReplicaSet: @unchecked Sendable {
    /// The CA directory; its `server` is replica 0.
    let fixture: CAFixture
    let databaseURL: String
    private(set) var replicas: [ServerProcess]

    init(count: Int = 2, database given: String? = nil, extraArguments: [String] = []) async throws {
        let url: String
        if let given {
            url = given
        } else {
            url = TestPostgres.url(of: try await TestPostgres.shared.freshDatabase())
        }
        let arguments = ["--database", url] + extraArguments
        databaseURL = url
        self.extraArguments = arguments
        fixture = try CAFixture { try ServerProcess(directory: $0, extraArguments: arguments) }
        replicas = [fixture.server]
        for _ in 1..<count { replicas.append(try ServerProcess(directory: fixture.caDir, extraArguments: arguments)) }
    }

    private let extraArguments: [String]

    deinit { for replica in replicas.dropFirst() { replica.stop() } }

    var caDir: String { fixture.caDir }
    /// Every replica's address, comma-separated, as `vouch agent --ca` takes them.
    var addressList: String { replicas.map(\.address).joined(separator: ",") }
    func address(_ index: Int) -> HostPort { HostPort(host: "127.0.0.1", port: replicas[index].port) }

    /// Starts replica `index` again on its port, e.g. after `replicas[index].kill()`.
    func restart(_ index: Int) throws {
        replicas[index] = try ServerProcess(directory: caDir, port: replicas[index].port, extraArguments: extraArguments)
    }

    /// `vouch token create` through replica `index`.
    func createToken(spiffeID: String, uses: Int = 1, through index: Int = 0) throws -> String {
        let result = try execute(VouchBinary.path, ["token", "create", "--dir", caDir, "--server", replicas[index].address,
                                                    "--spiffe-id", spiffeID, "--ttl", "15m", "--uses", String(uses),
                                                    "--dns", "localhost", "--ip", "127.0.0.1"])
        guard result.status == 0 else { throw CLIFailure("token create failed: \(result.stderr)") }
        return result.lastLine
    }

    /// A `vouch agent` for `spiffeID` given every replica, enrolled with a fresh token.
    func startAgent(_ spiffeID: String, ttl: String, extra: [String] = []) throws -> (agent: AgentProcess, out: String) {
        let name = spiffeID.split(separator: "/").last.map(String.init) ?? "agent"
        let out = fixture.root + "/agent-" + name, tokenFile = fixture.root + "/token-" + name
        try createToken(spiffeID: spiffeID).write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let agent = try AgentProcess(arguments: ["--ca", addressList, "--ca-bundle", caDir + "/bundle.pem", "--out", out,
                                                 "--cert-ttl", ttl, "--token-file", tokenFile] + extra)
        return (agent, out)
    }

    func ca<Result: Sendable>(_ index: Int, _ credentials: VouchClient.Credentials,
                              _ body: (Vouch_V1_CertificateAuthority.Client<HTTP2ClientTransport.Posix>) async throws -> Result)
        async throws -> Result {
        try await VouchClient.with(server: address(index), credentials: credentials) { client in
            try await body(Vouch_V1_CertificateAuthority.Client(wrapping: client))
        }
    }

    func enroll(_ index: Int, token: String, key: PrivateKey) async throws -> Vouch_V1_CertificateResponse {
        var request = Vouch_V1_EnrollRequest()
        request.token = token
        request.csr = Data(try CertificateSigningRequest.create(key: key, subjectAltNames: SubjectAltNames()).der)
        return try await ca(index, fixture.anonymous) { try await $0.enroll(request, options: VouchClient.options(timeout: .seconds(5))) }
    }

    func renew(_ index: Int, as credentials: VouchClient.Credentials, newKey: PrivateKey) async throws -> Vouch_V1_CertificateResponse {
        try await ca(index, credentials) {
            try await $0.renew(CAFixture.renewRequest(newKey), options: VouchClient.options(timeout: .seconds(5)))
        }
    }

    /// Serials of `serials` that the database does not hold.
    func missingFromDatabase(_ serials: [String]) throws -> [String] {
        guard !serials.isEmpty else { return [] }
        let list = serials.map { "('\($0)')" }.joined(separator: ",")
        let missing = try runPSQL(databaseURL, "SELECT s FROM (VALUES \(list)) AS v(s) WHERE NOT EXISTS (SELECT 1 FROM certificate c WHERE c.serial = v.s)")
        return missing.split(separator: "\n").map(String.init)
    }
}

/// Runs SQL with psql against a database URL; its rows, unaligned, without headers.
func runPSQL(_ url: String, _ sql: String) throws -> String {
    let result = try execute(TestPostgres.binaries + "/psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
    guard result.status == 0 else { throw CLIFailure("psql failed (\(result.status)) on \(sql): \(result.stderr)") }
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}
