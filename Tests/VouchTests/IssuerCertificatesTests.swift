import Foundation
import Testing
import VouchAuthority
import VouchCrypto

/// The certificates `intermediate rotate` and `root prepare` make, checked with `openssl verify`:
/// a leaf of the new intermediate verifies against the old root through the cross certificate
/// and against the new root through the new intermediate.
@Suite("Issuer certificates")
struct IssuerCertificatesTests {
    let now = Date()
    let oldRoot: CertificateSigner

    init() throws {
        let key = try PrivateKey(generating: .p256)
        oldRoot = try CertificateSigner(certificate: CertificateSigner.selfSigned(key: key, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("O", "Vouch"), ("CN", "Vouch Root CA")],
            notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(3 * 365 * 86400))), key: key)
    }

    func leaf(of issuer: IssuerLifecycle.NewIssuer) throws -> X509Certificate {
        try LocalIssuance.issue(signer: CertificateSigner(certificate: issuer.certificate, key: issuer.key),
                                spiffeID: "spiffe://example.org/svc/web", lifetime: 3600, now: now).certificate
    }

    /// `openssl verify -CAfile trusted -untrusted chain leaf`: 0 when it verifies.
    func verify(_ leaf: X509Certificate, trusting roots: [X509Certificate], chain: [X509Certificate]) throws -> CommandResult {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try pemBundle(roots).write(toFile: dir + "/roots.pem", atomically: true, encoding: .utf8)
        try leaf.pem.write(toFile: dir + "/leaf.pem", atomically: true, encoding: .utf8)
        var arguments = ["verify", "-CAfile", dir + "/roots.pem"]
        if !chain.isEmpty {
            try pemBundle(chain).write(toFile: dir + "/chain.pem", atomically: true, encoding: .utf8)
            arguments += ["-untrusted", dir + "/chain.pem"]
        }
        return try openssl(arguments + [dir + "/leaf.pem"])
    }

    @Test("a rotated intermediate: pathlen 0, dated name, never outlives its root, and its leaves verify")
    func rotatedIntermediate() throws {
        let rotated = try IssuerLifecycle.intermediate(under: oldRoot, now: now)
        let day = now.formatted(Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!).year().month().day())
        #expect(rotated.certificate.commonName == "Vouch Intermediate CA \(day)")
        #expect(rotated.certificate.notAfter == oldRoot.certificate.notAfter, "5 years capped by the 3-year root")
        #expect(rotated.certificate.isSigned(by: oldRoot.certificate))
        let again = try IssuerLifecycle.intermediate(under: oldRoot, now: now, takenNames: [rotated.certificate.commonName!])
        #expect(again.certificate.commonName == "Vouch Intermediate CA \(day) (2)")
        let checked = try verify(try leaf(of: rotated), trusting: [oldRoot.certificate], chain: [rotated.certificate])
        #expect(checked.status == 0, "\(checked.stdout)\(checked.stderr)")
    }

    @Test("after prepare, a leaf of I2 verifies against R1 with [X] and against R2 with [I2]; E is R2's key signed by R1")
    func preparedRoot() throws {
        let prepared = try IssuerLifecycle.prepareRoot(oldRoot: oldRoot, now: now)
        let leaf = try leaf(of: prepared.intermediate)
        let viaCross = try verify(leaf, trusting: [oldRoot.certificate], chain: [prepared.cross])
        #expect(viaCross.status == 0, "\(viaCross.stdout)\(viaCross.stderr)")
        let viaNewRoot = try verify(leaf, trusting: [prepared.root.certificate], chain: [prepared.intermediate.certificate])
        #expect(viaNewRoot.status == 0, "\(viaNewRoot.stdout)\(viaNewRoot.stderr)")
        let sentAfterActivate = try verify(leaf, trusting: [prepared.root.certificate], chain: [prepared.intermediate.certificate, prepared.cross])
        #expect(sentAfterActivate.status == 0, "[I2, X] for a verifier holding only R2")
        let wrongPair = try verify(leaf, trusting: [oldRoot.certificate], chain: [prepared.intermediate.certificate])
        #expect(wrongPair.status != 0, "I2 alone does not reach R1")

        #expect(prepared.root.certificate.isSigned(by: prepared.root.certificate))
        #expect(try prepared.endorsement.publicKeyDER == prepared.root.certificate.publicKeyDER)
        #expect(prepared.endorsement.commonName == prepared.root.certificate.commonName)
        #expect(prepared.endorsement.isSigned(by: oldRoot.certificate))
        #expect(try prepared.cross.publicKeyDER == prepared.intermediate.certificate.publicKeyDER)
        #expect(prepared.cross.notAfter == oldRoot.certificate.notAfter, "X never outlives R1")
        #expect(prepared.endorsement.notAfter == oldRoot.certificate.notAfter, "E never outlives R1")
        #expect(prepared.root.certificate.notAfter.timeIntervalSince(now) > 9 * 365 * 86400, "R2 lives 10 years")
        #expect(prepared.root.certificate.serialHex != prepared.endorsement.serialHex)
    }

    @Test("a root key that is not the active root's is refused with its path and the root's serial")
    func foreignRootKey() throws {
        let foreign = try PrivateKey(generating: .p256)
        #expect(throws: AuthorityError(.failedPrecondition, "/keys/other.pem is not the key of the active root \(oldRoot.certificate.serialHex)")) {
            try IssuerLifecycle.rootSigner(oldRoot.certificate, key: foreign, keyPath: "/keys/other.pem")
        }
    }
}
