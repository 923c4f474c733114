import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import VouchAPI
import VouchCrypto
import VouchTLS
import XCTest

/// The CA server issues its own listener certificate, renews it at 2/3 of `--server-cert-ttl`
/// and reloads it while clients keep calling: new connections get the new certificate, open
/// connections keep working, no call fails.
final class CAListenerIdentityTests: XCTestCase {
    func testCAListenerCertificateRenewsAndReloadsWithNoFailedCall() async throws {
        let ca = try CAFixture { try ServerProcess(directory: $0, extraArguments: ["--server-cert-ttl", "20s"]) }
        let bootstrap = try X509Certificate(pem: String(contentsOfFile: ca.caDir + "/server.pem", encoding: .utf8))
        var served: [String] = []
        var failures: [String] = []
        var calls = 0
        // One connection held open throughout (it keeps its certificate), and a fresh one per call
        // (each sees the certificate served now): every 100 ms, until the listener was renewed twice.
        try await VouchClient.with(server: ca.address, credentials: ca.admin) { held in
            let open = Vouch_V1_CertificateAuthority.Client(wrapping: held)
            let deadline = Date().addingTimeInterval(45)
            while Set(served).count < 3, Date() < deadline {
                calls += 1
                do {
                    _ = try await open.getTrustBundle(Vouch_V1_TrustBundleRequest(), options: VouchClient.options(timeout: .seconds(5)))
                    let serial = try await servedSerial(ca)
                    if served.last != serial { served.append(serial) }
                } catch {
                    failures.append("\(error)")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        XCTAssertEqual(failures, [], "\(calls) calls")
        XCTAssertEqual(served.count, 3, "served in turn: \(served)\n\(ca.server.log)")
        XCTAssertFalse(served.contains(bootstrap.serialHex), "the server presents a certificate of its own, not server.pem")
        XCTAssertTrue(ca.server.log.contains("renewed the listener certificate"), ca.server.log)

        // Each one is recorded, a renewal superseding its predecessor.
        let last = try await VouchClient.with(server: ca.address, credentials: ca.admin) { client in
            var request = Vouch_V1_GetCertificateRequest()
            request.serial = served[2]
            return try await Vouch_V1_Admin.Client(wrapping: client).getCertificate(request)
        }
        XCTAssertEqual(last.spiffeID, "spiffe://example.org/vouch/server")
        XCTAssertEqual(last.renewedFrom, served[1])
        let names = try X509Certificate(der: Array(last.certificate)).subjectAltNames
        XCTAssertEqual(names.dnsNames, bootstrap.subjectAltNames.dnsNames, "the names of server.pem")
        XCTAssertEqual(names.ipAddresses, bootstrap.subjectAltNames.ipAddresses)
    }

    /// Opens a new connection, calls GetTrustBundle anonymously, and returns the serial of the
    /// certificate the server presented (checked as every client checks it).
    private func servedSerial(_ ca: CAFixture) async throws -> String {
        let bundle = ca.caDir + "/bundle.pem"
        let verifier = try ServerCertificateVerifier(rootsPEM: String(contentsOfFile: bundle, encoding: .utf8), host: "127.0.0.1",
                                                     isIPAddress: true, expected: .vouchServer(trustDomain: ca.trustDomain))
        let seen = Mutex<String?>(nil)
        let transport = try HTTP2ClientTransport.Posix(
            target: .ipv4(address: "127.0.0.1", port: ca.server.port),
            transportSecurity: .tls { tls in
                tls.trustRoots = .certificates([.file(path: bundle, format: .pem)])
                tls.customVerificationCallback = { certificates, promise in
                    if let der = try? certificates.first?.toDERBytes(), let leaf = try? X509Certificate(der: der) {
                        seen.withLock { $0 = leaf.serialHex }
                    }
                    verifier.verify(certificates, promise)
                }
            })
        try await withGRPCClient(transport: transport) { client in
            _ = try await Vouch_V1_CertificateAuthority.Client(wrapping: client)
                .getTrustBundle(Vouch_V1_TrustBundleRequest(), options: VouchClient.options(timeout: .seconds(5)))
        }
        return try XCTUnwrap(seen.withLock { $0 })
    }
}
