import Foundation
import GRPCCore
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchFiles
import VouchTLS
import XCTest

/// The CA's listener TLS takes a new server certificate without a restart (what CA certificate
/// rotation builds on): after `reload()`, new handshakes get the certificate now in server.pem,
/// and a client without a certificate is still served.
final class CAListenerReloadTests: XCTestCase {
    func testReloadServesTheRewrittenServerCertificateToNewHandshakes() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-ca-reload-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let files = CAFiles(directory: directory)
        _ = try CAInitializer(files: files, trustDomain: "example.org", passphrase: nil).run()
        let material = try CAMaterial.load(from: files, passphrase: nil)
        let tls = try RotatingServerTLS(requireClientCertificate: false) {
            try files.listenerTLSMaterial(intermediatePEM: material.intermediate.pem)
        }
        let server = GRPCServer(transport: try tls.makeTransport(host: "127.0.0.1", port: 0), services: [HealthService(services: [])])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.serve() }
            let port = try await server.listeningAddress?.ipv4?.port ?? 0
            let initial = try X509Certificate(pem: String(contentsOfFile: files.serverCertificate, encoding: .utf8))
            XCTAssertEqual(try servedSerial(port: port, bundle: files.bundle), initial.serialHex)

            let next = try LocalIssuance.issue(signer: material.signer, spiffeID: "spiffe://example.org/vouch/server",
                                               dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], lifetime: 3600, now: Date())
            try AtomicFile.write(try next.key.pkcs8PEM(), to: files.serverKey, mode: 0o600)
            try AtomicFile.write(next.certificate.pem + material.intermediate.pem, to: files.serverCertificate)
            XCTAssertEqual(try servedSerial(port: port, bundle: files.bundle), initial.serialHex, "nothing changes before reload()")
            try tls.reload()
            XCTAssertEqual(try servedSerial(port: port, bundle: files.bundle), next.certificate.serialHex)
            server.beginGracefulShutdown()
        }
    }

    /// The serial of the certificate a TLS 1.3 handshake without a client certificate gets.
    private func servedSerial(port: Int, bundle: String) throws -> String {
        let result = try openssl(["s_client", "-connect", "127.0.0.1:\(port)", "-tls1_3", "-alpn", "h2", "-CAfile", bundle], stdin: Data())
        XCTAssertTrue(result.stdout.contains("Verify return code: 0 (ok)"), result.stdout)
        return try X509Certificate(pem: result.stdout).serialHex
    }
}
