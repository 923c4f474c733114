import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import VouchCrypto
import VouchTLS
import X509
import XCTest
@testable import VouchAgent

/// Both Vouch verifiers ask about every certificate of the validated chain, so a chain through an
/// intermediate its root revoked is refused although the peer presents that intermediate itself:
/// here with the root CRL an agent holds (crl-<root serial>.der), read again when it is replaced.
final class RevokedIntermediateVerifierTests: XCTestCase {
    func testAServerOrClientChainThroughAnIntermediateInTheRootCRLHeldIsRefused() async throws {
        func authority(_ name: String) throws -> CertificateTemplate {
            CertificateTemplate(role: .authority(pathLength: 0), serial: try SerialNumber.random(), subject: [("CN", name)],
                                notBefore: Date().addingTimeInterval(-60), notAfter: Date().addingTimeInterval(3600))
        }
        let rootKey = try PrivateKey(generating: .p256)
        let root = try CertificateSigner(certificate: CertificateSigner.selfSigned(key: rootKey, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Root")],
            notBefore: Date().addingTimeInterval(-60), notAfter: Date().addingTimeInterval(3600))), key: rootKey)
        let oldKey = try PrivateKey(generating: .p256), newKey = try PrivateKey(generating: .p256)
        let old = try CertificateSigner(certificate: root.sign(publicKeyOf: oldKey, template: authority("Old")), key: oldKey)
        let new = try CertificateSigner(certificate: root.sign(publicKeyOf: newKey, template: authority("New")), key: newKey)
        func chain(under issuer: CertificateSigner) throws -> [NIOSSLCertificate] {
            let leaf = try issuer.sign(publicKeyOf: try PrivateKey(generating: .p256), template: CertificateTemplate(
                role: .leaf, serial: try SerialNumber.random(), subject: [("O", "Vouch")], notBefore: Date().addingTimeInterval(-60),
                notAfter: Date().addingTimeInterval(3600),
                subjectAltNames: SubjectAltNames(uris: ["spiffe://example.org/vouch/server"], ipAddresses: ["127.0.0.1"])))
            return try [leaf, issuer.certificate].map { try NIOSSLCertificate(bytes: $0.der, format: .der) }
        }
        let directory = NSTemporaryDirectory() + "vouch-revoked-intermediate-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let held = RootCRLRevocations(files: IdentityFiles(directory: directory))
        let rejections = RejectionLog()
        let server = try ServerCertificateVerifier(rootsPEM: root.certificate.pem, host: "127.0.0.1", isIPAddress: true,
                                                   expected: .vouchServer(trustDomain: "example.org"), isRevokedByIssuer: held.isRevoked)
        let client = try PeerCertificateVerifier(rootsPEM: root.certificate.pem, isRevokedByIssuer: held.isRevoked, onReject: rejections.append)
        let group = MultiThreadedEventLoopGroup.singleton
        func verified(_ verify: (([NIOSSLCertificate], EventLoopPromise<NIOSSLVerificationResultWithMetadata>) -> Void),
                      _ presented: [NIOSSLCertificate]) async throws -> Bool {
            let promise = group.next().makePromise(of: NIOSSLVerificationResultWithMetadata.self)
            verify(presented, promise)
            if case .certificateVerified = try await promise.futureResult.get() { return true }
            return false
        }
        let oldChain = try chain(under: old), newChain = try chain(under: new)
        let saved = directory + "/crl-\(root.certificate.serialHex).der"
        func saveRootCRL(number: Int64, revoking: [X509Certificate]) throws {
            let crl = try root.makeCRL(entries: revoking.map { RevokedCertificateEntry(serial: SerialNumber.bytes(fromHex: $0.serialHex)!, revokedAt: Date(), reason: 1) },
                                       number: number, thisUpdate: Date(), nextUpdate: Date().addingTimeInterval(3600))
            try Data(crl).write(to: URL(fileURLWithPath: saved), options: .atomic)
        }

        // Before the root lists it, the old intermediate is as good as the new one.
        try saveRootCRL(number: 1, revoking: [])
        for presented in [oldChain, newChain] {
            let serverAccepted = try await verified(server.verify, presented)
            let clientAccepted = try await verified(client.verify, presented)
            XCTAssertTrue(serverAccepted, server.lastRejection ?? "")
            XCTAssertTrue(clientAccepted, rejections.all.joined(separator: "\n"))
        }

        // The root's next CRL replaces the file: the next handshake through the old intermediate is refused.
        try saveRootCRL(number: 2, revoking: [old.certificate])
        let refusal = "intermediate \(old.certificate.serialHex) is revoked"
        let serverRefused = try await !verified(server.verify, oldChain)
        XCTAssertTrue(serverRefused)
        XCTAssertEqual(server.lastRejection, "the certificate of the server at 127.0.0.1 did not verify: \(refusal)")
        let clientRefused = try await !verified(client.verify, oldChain)
        XCTAssertTrue(clientRefused)
        XCTAssertEqual(rejections.all, [refusal])
        let newServerAccepted = try await verified(server.verify, newChain)
        let newClientAccepted = try await verified(client.verify, newChain)
        XCTAssertTrue(newServerAccepted && newClientAccepted, "\(server.lastRejection ?? "") \(rejections.all)")

        // A file the root did not sign lists nothing.
        let forged = try old.makeCRL(entries: [RevokedCertificateEntry(serial: SerialNumber.bytes(fromHex: new.certificate.serialHex)!, revokedAt: Date(), reason: 1)],
                                     number: 3, thisUpdate: Date(), nextUpdate: Date().addingTimeInterval(3600))
        try Data(forged).write(to: URL(fileURLWithPath: saved), options: .atomic)
        let forgedIgnored = try await verified(client.verify, newChain)
        XCTAssertTrue(forgedIgnored, rejections.all.joined(separator: "\n"))
    }
}

/// The reasons a verifier gave, in order.
private final class RejectionLog: Sendable {
    private let reasons = Mutex<[String]>([])
    var all: [String] { reasons.withLock { $0 } }
    func append(_ reason: String) { reasons.withLock { $0.append(reason) } }
}
