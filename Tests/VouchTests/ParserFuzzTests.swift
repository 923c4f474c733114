import Foundation
import VouchCrypto
import XCTest

/// Bounded random-mutation fuzzing of the DER parsers that see untrusted
/// bytes (CSRs from clients, certificates and CRLs from peers): no crash, and
/// a mutated CSR is only ever accepted with a verifying signature.
final class ParserFuzzTests: XCTestCase {
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state ^ (state >> 33)
        }
    }

    func mutate(_ input: [UInt8], using random: inout SeededGenerator) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            switch Int.random(in: 0..<5, using: &random) {
            case 0 where !bytes.isEmpty: bytes[Int.random(in: 0..<bytes.count, using: &random)] ^= UInt8.random(in: 1...255, using: &random)
            case 1 where !bytes.isEmpty: bytes.remove(at: Int.random(in: 0..<bytes.count, using: &random))
            case 2: bytes.insert(UInt8.random(in: 0...255, using: &random), at: Int.random(in: 0...bytes.count, using: &random))
            case 3 where bytes.count > 2: bytes = Array(bytes.prefix(Int.random(in: 1..<bytes.count, using: &random)))
            default:
                // Length fields are the classic DER trap: set one to an extreme.
                if let index = bytes.indices.filter({ bytes[$0] & 0x80 != 0 && $0 + 1 < bytes.count }).randomElement(using: &random) {
                    bytes[index + 1] = [0x00, 0x7f, 0xff].randomElement(using: &random)!
                }
            }
        }
        return bytes
    }

    func testMutatedCSRsCertificatesAndCRLsNeverCrashTheParsers() throws {
        let key = try PrivateKey(generating: .p256)
        let csr = try CertificateSigningRequest.create(key: key, subjectAltNames: SubjectAltNames(
            uris: ["spiffe://example.org/svc/web"], dnsNames: ["web.internal"], ipAddresses: ["10.0.0.1"])).der
        let caKey = try PrivateKey(generating: .p256)
        let now = Date()
        let root = try CertificateSigner.selfSigned(key: caKey, template: CertificateTemplate(
            role: .authority(pathLength: 0), serial: try SerialNumber.random(), subject: [("CN", "fuzz")],
            notBefore: now, notAfter: now.addingTimeInterval(3600)))
        let signer = try CertificateSigner(certificate: root, key: caKey)
        let leaf = try signer.sign(try CertificateSigningRequest(der: csr), template: CertificateTemplate(
            role: .leaf, serial: try SerialNumber.random(), subject: [], notBefore: now, notAfter: now.addingTimeInterval(60),
            subjectAltNames: SubjectAltNames(uris: ["spiffe://example.org/svc/web"]))).der
        let crl = try signer.makeCRL(entries: [RevokedCertificateEntry(serial: [1, 2, 3], revokedAt: now, reason: 1)],
                                     number: 1, thisUpdate: now, nextUpdate: now.addingTimeInterval(60))

        var random = SeededGenerator(state: 0x5eed_7000_c5a0)
        // VOUCH_FUZZ_ITERATIONS=1000000 scripts/test.sh --filter ParserFuzzTests runs the long variant.
        let iterations = Int(ProcessInfo.processInfo.environment["VOUCH_FUZZ_ITERATIONS"] ?? "") ?? 6000
        var accepted = 0
        for _ in 0..<iterations {
            let mutatedCSR = mutate(csr, using: &random)
            if let parsed = try? CertificateSigningRequest(der: mutatedCSR) {
                // Accepted only because the signature still verifies over what was parsed.
                accepted += 1
                _ = parsed.subjectAltNames
                _ = parsed.publicKeyDescription
            }
            if let certificate = try? X509Certificate(der: mutate(leaf, using: &random)) {
                _ = certificate.subjectAltNames
                _ = certificate.serialHex
                _ = certificate.notAfter
                _ = certificate.isSigned(by: root)
            }
            if let list = try? CertificateRevocationList(der: mutate(crl, using: &random)) {
                _ = list.entries
                _ = list.number
                _ = list.isSigned(by: root)
            }
        }
        print("fuzz: \(iterations * 3) parser executions, \(accepted) mutated CSRs still verified")
        // Flipping bits almost always breaks the signature; a CSR may survive only through
        // mutations the signature does not cover, which must be rare.
        XCTAssertLessThan(accepted, max(1, iterations / 20))
    }
}
