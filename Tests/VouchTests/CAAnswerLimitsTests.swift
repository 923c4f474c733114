import Foundation
import GRPCCore
import VouchAPI
@testable import VouchAgent
import VouchCrypto
import VouchTLS
import XCTest

/// The agent's CA client against a CA that answers too much, over a real gRPC connection in
/// process: an answer over 1 MiB is not read, and too many intermediates or roots are refused
/// before anything is parsed. (Enroll and Renew share the client's limits; Enroll needs no
/// client certificate.) The agent keeping its certificate through such answers is shown end to
/// end in AgentTrustTests.testHostileRenewalAnswersAreRejectedBeforeAnythingIsWritten.
final class CAAnswerLimitsTests: XCTestCase {
    func testOversizedAnswersAreRefusedBeforeTheyAreParsed() async throws {
        let ca = try CAFixture()
        let fake = try await FakeCertificateAuthority.start(impersonating: ca)
        defer { fake.stop() }
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let client = CertificateAuthorityClient(address: HostPort(host: "127.0.0.1", port: fake.port), bundlePath: ca.caDir + "/bundle.pem",
                                                timeout: .seconds(5), server: CAServerIdentity(configured: nil, files: IdentityFiles(directory: directory)))
        let id = "spiffe://example.org/svc/web"
        @Sendable func leaf(_ csr: CertificateSigningRequest) throws -> X509Certificate {
            try fake.honest.sign(csr, template: fake.leafTemplate(spiffeID: id, lifetime: 60))
        }

        let oversized: [(what: String, refusal: String, answer: FakeCertificateAuthority.Answer)] = [
            ("a 2 MB answer", "exceeded the configured maximum payload size (max: 1048576", { csr in fake.response(try leaf(csr), roots: Array(repeating: fake.realRoot, count: 4000)) }),
            ("a 200-certificate chain", "chain has 200 intermediates (at most 4)", { csr in
                fake.response(try leaf(csr), chain: Array(repeating: fake.honest.certificate, count: 200)) }),
            ("17 roots", "17 roots offered (at most 16)", { csr in fake.response(try leaf(csr), roots: Array(repeating: fake.realRoot, count: 17)) }),
        ]
        for (what, refusal, answer) in oversized {
            fake.answerIssuance(answer)
            do {
                _ = try await client.enroll(token: "any-token", key: try PrivateKey(generating: .p256), ttl: 60)
                XCTFail("\(what): accepted")
            } catch let error as RPCError {
                // The transport reports the read limit as a failure to decode the message.
                XCTAssertTrue("\(error)".contains(refusal), "\(what): \(error)")
            } catch let rejected as IdentityRejected {
                XCTAssertTrue(rejected.description.contains(refusal), "\(what): \(rejected)")
            }
        }

        // An honest answer of the same CA passes.
        fake.answerIssuance { csr in fake.response(try leaf(csr)) }
        let answer = try await client.enroll(token: "any-token", key: try PrivateKey(generating: .p256), ttl: 60)
        XCTAssertEqual(try X509Certificate(der: answer.leaf).spiffeID, id)
    }
}
