import Foundation
import VouchAPI
@testable import VouchAgent
import VouchCrypto
import VouchTLS
import X509
import XCTest

/// What the agent believes of a Renew answer, in process: every way a CA holding a stolen
/// server key (or a broken one) can lie is refused with the reason the agent logs. The agent
/// refusing such an answer before writing anything, and still renewing afterwards, is shown end
/// to end in AgentTrustTests.testHostileRenewalAnswersAreRejectedBeforeAnythingIsWritten.
final class RenewalAnswerTrustTests: XCTestCase {
    let id = "spiffe://example.org/svc/web"
    var directory = ""
    var root: X509Certificate!
    var intermediate: CertificateSigner!
    var attackerRoot: CertificateSigner!
    var trust: AgentTrust!
    var current: Certificate!
    var key: PrivateKey!

    override func setUpWithError() throws {
        directory = try temporaryDirectory()
        let rootKey = try PrivateKey(generating: .p256), intermediateKey = try PrivateKey(generating: .p256)
        root = try CertificateSigner.selfSigned(key: rootKey, template: authorityTemplate("Vouch Root CA", pathLength: 1))
        intermediate = try CertificateSigner(certificate: CertificateSigner(certificate: root, key: rootKey)
            .sign(publicKeyOf: intermediateKey, template: authorityTemplate("Vouch Intermediate CA", pathLength: 0)), key: intermediateKey)
        // The attacker's root carries the same name as the real one.
        let attackerKey = try PrivateKey(generating: .p256)
        attackerRoot = try CertificateSigner(certificate: CertificateSigner.selfSigned(
            key: attackerKey, template: authorityTemplate("Vouch Root CA", pathLength: 1)), key: attackerKey)

        // The agent holds the real root in bundle.pem (and was handed it with --ca-bundle), asks
        // for 60 s certificates, and holds a certificate for `id`, localhost and 127.0.0.1.
        try root.pem.write(toFile: directory + "/bundle.pem", atomically: true, encoding: .utf8)
        let configuration = AgentConfiguration(caAddress: HostPort(host: "127.0.0.1", port: 1), caBundlePath: directory + "/bundle.pem",
                                               tokenFilePath: nil, outDirectory: directory, certificateTTL: .seconds(60))
        trust = AgentTrust(configuration: configuration, files: IdentityFiles(directory: directory))
        current = try Certificate(derEncoded: intermediate.sign(publicKeyOf: try PrivateKey(generating: .p256), template: leafTemplate(lifetime: 60)).der)
        key = try PrivateKey(generating: .p256)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func authorityTemplate(_ name: String, pathLength: Int) throws -> CertificateTemplate {
        CertificateTemplate(role: .authority(pathLength: pathLength), serial: try SerialNumber.random(), subject: [("CN", name)],
                            notBefore: Date().addingTimeInterval(-60), notAfter: Date().addingTimeInterval(3600))
    }

    func leafTemplate(spiffeID: String? = nil, lifetime: TimeInterval, notBefore: Date = Date().addingTimeInterval(-6),
                      role: CertificateTemplate.Role = .leaf, dnsNames: [String] = ["localhost"]) throws -> CertificateTemplate {
        CertificateTemplate(role: role, serial: try SerialNumber.random(), subject: [("O", "Vouch")],
                            notBefore: notBefore, notAfter: notBefore.addingTimeInterval(lifetime),
                            subjectAltNames: SubjectAltNames(uris: [spiffeID ?? id], dnsNames: dnsNames, ipAddresses: ["127.0.0.1"]))
    }

    func answer(_ leaf: X509Certificate, chain: [X509Certificate]? = nil, roots: [X509Certificate]? = nil) -> CAAnswer {
        CAAnswer(leaf: leaf.der, chain: (chain ?? [intermediate.certificate]).map(\.der), roots: (roots ?? [root]).map(\.der))
    }

    func testEveryLyingRenewAnswerIsRefusedWithItsReason() async throws {
        let otherKey = try PrivateKey(generating: .p256)
        let hostile: [(what: String, reason: String, answer: CAAnswer)] = [
            ("a leaf from the attacker's own root, offering that root", "does not chain to a trusted root",
             answer(try attackerRoot.sign(publicKeyOf: key, template: leafTemplate(lifetime: 60)), chain: [], roots: [attackerRoot.certificate])),
            ("a leaf from the attacker's root behind the real intermediate", "does not chain to a trusted root",
             answer(try attackerRoot.sign(publicKeyOf: key, template: leafTemplate(lifetime: 60)))),
            ("a 100-year leaf", "longer than the 180s allowed",
             answer(try intermediate.sign(publicKeyOf: key, template: leafTemplate(lifetime: 100 * 365 * 86400)))),
            ("a leaf ending later than asked", "after the",
             answer(try intermediate.sign(publicKeyOf: key, template: leafTemplate(lifetime: 170, notBefore: Date().addingTimeInterval(50))))),
            ("a leaf for another SPIFFE ID", "is for spiffe://example.org/vouch/admin, not \(id)",
             answer(try intermediate.sign(publicKeyOf: key, template: leafTemplate(spiffeID: "spiffe://example.org/vouch/admin", lifetime: 60)))),
            ("a leaf with a name the held one lacks", "carries DNS name evil.example, which was not asked for",
             answer(try intermediate.sign(publicKeyOf: key, template: leafTemplate(lifetime: 60, dnsNames: ["localhost", "evil.example"])))),
            ("a leaf for another key", "does not hold the agent's key",
             answer(try intermediate.sign(publicKeyOf: otherKey, template: leafTemplate(lifetime: 60)))),
            ("a CA:true leaf", "is a CA certificate",
             answer(try intermediate.sign(publicKeyOf: key, template: leafTemplate(lifetime: 60, role: .authority(pathLength: 0))))),
            ("an expired leaf", "expired at",
             answer(try intermediate.sign(publicKeyOf: key, template: leafTemplate(lifetime: 60, notBefore: Date().addingTimeInterval(-3600))))),
            ("a 200-certificate chain", "chain has 200 intermediates (at most 4)",
             answer(try intermediate.sign(publicKeyOf: key, template: leafTemplate(lifetime: 60)),
                    chain: Array(repeating: intermediate.certificate, count: 200))),
        ]
        for (what, reason, answer) in hostile {
            do {
                _ = try await trust.verifyRenewal(answer, key: key, current: current)
                XCTFail("\(what): accepted")
            } catch let rejected as IdentityRejected {
                XCTAssertTrue(rejected.description.contains(reason), "\(what): \(rejected)")
            }
        }
    }

    func testAnHonestAnswerIsBelievedButNotTheRootsThatComeWithIt() async throws {
        let leaf = try intermediate.sign(publicKeyOf: key, template: leafTemplate(lifetime: 60))
        let attacker: X509Certificate = attackerRoot.certificate, real: X509Certificate = root
        for (roots, untrusted) in [([X509Certificate](), 0), ([attacker], 1), ([real], 0)] {
            let offered = answer(leaf, roots: roots)
            let verified = try await trust.verifyRenewal(offered, key: key, current: current)
            XCTAssertEqual(verified.leaf.serialHex, leaf.serialHex)
            XCTAssertEqual(trust.untrustedRootCount(offered, trusted: try trust.heldRoots()), untrusted, "roots not already held are counted")
        }
    }
}
