import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import VouchAPI
import VouchCrypto
import VouchSQLiteStore
import VouchTLS
import XCTest

/// A running server follows `vouch ca intermediate rotate` (run next to it on its SQLite
/// database) without a restart: it signs with the new intermediate, its listener still accepts
/// leaves of the old one sent alone (the handshake fix), renews its own certificate from the new
/// one, and streams the new trust bundle to certificate holders, who confirm it.
final class IssuerFollowerProcessTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    func testARotationReachesTheRunningServerItsListenerAndTheTrustStream() async throws {
        let ca = try CAFixture { try ServerProcess(directory: $0, extraArguments: ["--http", "127.0.0.1:0"]) }
        // A leaf of the first intermediate, presented without its chain (as agents do).
        let key = try PrivateKey(generating: .p256)
        let enrolled = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: key)
        let leafOnly = try writeLeafOnly(enrolled, key: key, ca: ca)
        let firstIntermediate = try XCTUnwrap(enrolled.chain.first)

        let bundles = Mutex<[Vouch_V1_TrustBundle]>([])
        let stream = Task {
            try await ca.ca(leafOnly) { client in
                try await client.watchTrustBundle(Vouch_V1_WatchTrustBundleRequest()) { response in
                    for try await bundle in response.messages { bundles.withLock { $0.append(bundle) } }
                }
            }
        }
        defer { stream.cancel() }
        XCTAssertTrue(eventually(timeout: 5) { bundles.withLock { $0.count } == 1 }, "the current bundle at once")
        let first = bundles.withLock { $0[0] }
        XCTAssertEqual(first.activeIntermediate, firstIntermediate)
        XCTAssertEqual(first.intermediates, [firstIntermediate])

        let rotate = try vouch("ca", "intermediate", "rotate", "--dir", ca.caDir)
        XCTAssertEqual(rotate.status, 0, rotate.stderr)
        XCTAssertTrue(eventually(timeout: 6) { ca.server.log.contains("switched signing to intermediate") }, ca.server.log)
        XCTAssertTrue(ca.server.log.contains("(generation \(first.generation + 1))"), ca.server.log)

        // One message for the change: both intermediates for path building, the new one signing.
        XCTAssertTrue(eventually(timeout: 5) { bundles.withLock { $0.count } == 2 }, "\(bundles.withLock { $0.count }) messages")
        let second = bundles.withLock { $0[1] }
        XCTAssertEqual(second.generation, first.generation + 1)
        XCTAssertNotEqual(second.activeIntermediate, firstIntermediate)
        XCTAssertEqual(Set(second.intermediates), [firstIntermediate, second.activeIntermediate])
        XCTAssertEqual(second.roots, first.roots)
        let newIntermediate = try X509Certificate(der: Array(second.activeIntermediate))
        XCTAssertTrue(ca.server.log.contains("switched signing to intermediate \(newIntermediate.serialHex)"), ca.server.log)
        let metrics = try execute("/usr/bin/curl", ["-sf", "http://\(try XCTUnwrap(ca.server.httpAddress))/metrics"]).stdout
        let oldSerial = try X509Certificate(der: Array(firstIntermediate)).serialHex
        XCTAssertTrue(metrics.contains("vouch_ca_signing_issuer_info{serial=\"\(newIntermediate.serialHex)\"} 1"), metrics)
        XCTAssertTrue(metrics.contains("vouch_ca_signing_issuer_info{serial=\"\(oldSerial)\"} 0"), metrics)

        // The listener's own certificate comes from the new intermediate at once.
        XCTAssertTrue(eventually(timeout: 5) { ca.server.log.contains("renewed the listener certificate: the signing issuer changed") },
                      ca.server.log)
        let served = try await servedCertificate(ca)
        XCTAssertTrue(served.isSigned(by: newIntermediate), "new handshakes get the new listener certificate")

        // The old leaf, sent alone, still passes the handshake and renews from the new intermediate.
        let renewed = try await ca.renew(with: leafOnly, newKey: try PrivateKey(generating: .p256))
        XCTAssertEqual(renewed.chain.first, second.activeIntermediate)
        XCTAssertTrue(try X509Certificate(der: Array(renewed.certificate)).isSigned(by: newIntermediate))

        // Confirmations are stored by serial; a repeat is answered too.
        var confirmation = Vouch_V1_TrustBundleConfirmation()
        confirmation.generation = second.generation
        confirmation.bundleSha256 = Data(repeating: 7, count: 32)
        for _ in 0..<2 { _ = try await ca.ca(leafOnly) { try await $0.confirmTrustBundle(confirmation) } }
        let stored = try await SQLiteAuthorityStore(path: ca.caDir + "/vouch.db").trustConfirmations()
        XCTAssertEqual(stored.map(\.spiffeID), [Self.web])
        XCTAssertEqual(stored.first?.generation, second.generation)
        confirmation.bundleSha256 = Data([1, 2, 3])
        await assertRPCError(.invalidArgument, "a digest that is not SHA-256") {
            try await ca.ca(leafOnly) { try await $0.confirmTrustBundle(confirmation) }
        }

        // A caller claiming a generation the CA never had (a fake CA gave it) starts over: the
        // current bundle at once. Confirming such a generation is refused.
        var ahead = Vouch_V1_WatchTrustBundleRequest()
        ahead.afterGeneration = 1_000_000
        let restarted = try await ca.ca(leafOnly) { client in
            try await client.watchTrustBundle(ahead) { response in
                for try await bundle in response.messages { return bundle }
                return Vouch_V1_TrustBundle()
            }
        }
        XCTAssertEqual(restarted.generation, second.generation)
        confirmation.generation = 1_000_000
        confirmation.bundleSha256 = Data(repeating: 7, count: 32)
        await assertRPCError(.invalidArgument, "a generation the CA never had") {
            try await ca.ca(leafOnly) { try await $0.confirmTrustBundle(confirmation) }
        }

        // The stream ends when the server shuts down.
        XCTAssertEqual(ca.server.stop(), 0)
        _ = await stream.result
        XCTAssertEqual(bundles.withLock { $0.count }, 2)
    }

    /// Writes the leaf alone (no chain) and its key; credentials for the CA.
    private func writeLeafOnly(_ response: Vouch_V1_CertificateResponse, key: PrivateKey, ca: CAFixture) throws -> VouchClient.Credentials {
        let certificatePath = ca.root + "/leaf-only.pem", keyPath = ca.root + "/leaf-only_key.pem"
        try X509Certificate(der: Array(response.certificate)).pem.write(toFile: certificatePath, atomically: true, encoding: .utf8)
        try key.pkcs8PEM().write(toFile: keyPath, atomically: true, encoding: .utf8)
        return VouchClient.Credentials(bundlePEMPath: ca.caDir + "/bundle.pem", certificatePEMPath: certificatePath, keyPEMPath: keyPath)
    }

    /// The certificate a new connection to the CA is presented.
    private func servedCertificate(_ ca: CAFixture) async throws -> X509Certificate {
        let bundle = ca.caDir + "/bundle.pem"
        let verifier = try ServerCertificateVerifier(rootsPEM: String(contentsOfFile: bundle, encoding: .utf8), host: "127.0.0.1",
                                                     isIPAddress: true, expected: .vouchServer(trustDomain: ca.trustDomain))
        let seen = Mutex<X509Certificate?>(nil)
        let transport = try HTTP2ClientTransport.Posix(
            target: .ipv4(address: "127.0.0.1", port: ca.server.port),
            transportSecurity: .tls { tls in
                tls.trustRoots = .certificates([.file(path: bundle, format: .pem)])
                tls.customVerificationCallback = { certificates, promise in
                    if let der = try? certificates.first?.toDERBytes() { seen.withLock { $0 = try? X509Certificate(der: der) } }
                    verifier.verify(certificates, promise)
                }
            })
        try await withGRPCClient(transport: transport) { client in
            _ = try await Vouch_V1_CertificateAuthority.Client(wrapping: client).getTrustBundle(Vouch_V1_TrustBundleRequest())
        }
        return try XCTUnwrap(seen.withLock { $0 })
    }
}
