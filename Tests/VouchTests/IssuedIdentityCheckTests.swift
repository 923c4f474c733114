import Foundation
@testable import VouchAgent
import VouchAPI
import VouchCrypto
import VouchTLS
import X509
import XCTest

/// The checks an agent applies to every certificate a CA hands it, in process: what the
/// end-to-end tests in AgentTrustTests do not reach (intermediates, sizes, SANs, log bucket).
final class IssuedIdentityCheckTests: XCTestCase {
    let id = "spiffe://example.org/svc/web"

    struct Authority {
        let root: X509Certificate
        let intermediate: CertificateSigner
    }

    func makeAuthority() throws -> Authority {
        let rootKey = try PrivateKey(generating: .p256), intermediateKey = try PrivateKey(generating: .p256)
        let root = try CertificateSigner.selfSigned(key: rootKey, template: authorityTemplate("Root", pathLength: 1))
        let rootSigner = try CertificateSigner(certificate: root, key: rootKey)
        let intermediate = try rootSigner.sign(publicKeyOf: intermediateKey, template: authorityTemplate("Intermediate", pathLength: 0))
        return Authority(root: root, intermediate: try CertificateSigner(certificate: intermediate, key: intermediateKey))
    }

    func authorityTemplate(_ name: String, pathLength: Int) throws -> CertificateTemplate {
        CertificateTemplate(role: .authority(pathLength: pathLength), serial: try SerialNumber.random(), subject: [("CN", name)],
                            notBefore: Date().addingTimeInterval(-60), notAfter: Date().addingTimeInterval(3600))
    }

    func leafTemplate(dnsNames: [String] = []) throws -> CertificateTemplate {
        CertificateTemplate(role: .leaf, serial: try SerialNumber.random(), subject: [("O", "Vouch")],
                            notBefore: Date().addingTimeInterval(-60), notAfter: Date().addingTimeInterval(600),
                            subjectAltNames: SubjectAltNames(uris: [id], dnsNames: dnsNames))
    }

    func verify(_ leaf: X509Certificate, _ intermediates: [[UInt8]], roots: [X509Certificate], key: PrivateKey,
                dnsNames: Set<String>? = nil) async throws -> VerifiedIdentity {
        try await IssuedIdentityCheck.verify(
            leafDER: leaf.der, intermediatesDER: intermediates, roots: try roots.map { try Certificate(derEncoded: $0.der) },
            expecting: IdentityExpectations(spiffeID: id, allowedDNSNames: dnsNames, publicKeyDER: try key.publicKeyDER,
                                            maximumLifetime: 3600))
    }

    func assertRejected(_ reason: String, file: StaticString = #filePath, line: UInt = #line,
                        _ body: () async throws -> VerifiedIdentity) async {
        do {
            _ = try await body()
            XCTFail("accepted; expected: \(reason)", file: file, line: line)
        } catch let error as IdentityRejected {
            XCTAssertTrue(error.description.contains(reason), error.description, file: file, line: line)
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
    }

    func testIntermediatesMustBeCAsThatChainToAHeldRoot() async throws {
        let authority = try makeAuthority(), stranger = try makeAuthority()
        let key = try PrivateKey(generating: .p256)
        let leaf = try authority.intermediate.sign(publicKeyOf: key, template: leafTemplate())
        let chain = [authority.intermediate.certificate.der]

        let verified = try await verify(leaf, chain, roots: [authority.root], key: key)
        XCTAssertEqual(try verified.intermediates.map { try $0.der }, chain)

        let notACA = try authority.intermediate.sign(publicKeyOf: try PrivateKey(generating: .p256), template: leafTemplate())
        await assertRejected("intermediate 2 is not a CA certificate") {
            try await self.verify(leaf, chain + [notACA.der], roots: [authority.root], key: key)
        }
        await assertRejected("intermediate 2 does not chain to a trusted root") {
            try await self.verify(leaf, chain + [stranger.intermediate.certificate.der], roots: [authority.root], key: key)
        }
        await assertRejected("chain has 5 intermediates (at most 4)") {
            try await self.verify(leaf, Array(repeating: chain[0], count: 5), roots: [authority.root], key: key)
        }
        await assertRejected("a certificate of 17000 bytes (at most 16384)") {
            try await self.verify(leaf, [[UInt8](repeating: 0x30, count: 17000)], roots: [authority.root], key: key)
        }
    }

    func testARenewedCertificateMayNotGainNames() async throws {
        let authority = try makeAuthority()
        let key = try PrivateKey(generating: .p256)
        let leaf = try authority.intermediate.sign(publicKeyOf: key, template: leafTemplate(dnsNames: ["web.internal", "evil.example"]))
        await assertRejected("carries DNS name evil.example, which was not asked for") {
            try await self.verify(leaf, [authority.intermediate.certificate.der], roots: [authority.root], key: key,
                                  dnsNames: ["web.internal"])
        }
    }

    func testLogBucketAllowsABurstThenOneASecondAndCountsTheRest() {
        let start = Date()
        let limiter = RateLimitedLog(burst: 10, perSecond: 1, now: start)
        let first = (0..<300).map { _ in limiter.admit(now: start) }
        XCTAssertEqual(first.compactMap { $0 }.count, 10)
        let next = limiter.admit(now: start.addingTimeInterval(1))
        XCTAssertEqual(next, 290, "the line after a flood reports how many were held back")
        XCTAssertEqual(limiter.takeSuppressed(), 0)
    }
}
