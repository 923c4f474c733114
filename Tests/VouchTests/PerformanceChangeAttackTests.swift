import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import VouchCrypto
import VouchTLS
import X509
import XCTest

/// Hostile inputs against Vouch's own CSR reader (csr.c) and the client-certificate verifier's
/// trust shortcuts (PeerTrust): each is refused or accepted as d2i_X509_REQ + X509_REQ_verify, and
/// RFC 5280 path validation, would have it, in process.
final class PerformanceChangeAttackTests: XCTestCase {
    // MARK: Requests

    static func bytes(_ hexLines: [String]) -> [UInt8] {
        let hex = Array(hexLines.joined().utf8)
        return stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
    }

    /// A P-256 request (SANs spiffe://example.org/svc/web, web.internal) whose key is the point at
    /// infinity (BIT STRING 00 00), with the ECDSA signature anyone can compute for that "key":
    /// r = x(kG), s = e/k for any k. OpenSSL imports the point and verifies the signature.
    static let pointAtInfinity = bytes([
        "3081d13079020100300f310d300b060355040a0c04746573743019301306072a8648ce3d020106082a8648ce3d0301",
        "0703020000a048304606092a864886f70d01090e3139303730350603551d11042e302c861c7370696666653a2f2f6578",
        "616d706c652e6f72672f7376632f776562820c7765622e696e7465726e616c300a06082a8648ce3d04030203480030",
        "4502210091819381d63a3485829251530f96da70c7c07451a2e4a5c2e0da238b710f7128022044786531f08e7812ee",
        "cff4c29e4161615b2b393ea409db73d383bdeb3fddc6eb",
    ])

    func testARequestForThePointAtInfinityIsRefusedThoughItsSignatureVerifies() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Data(Self.pointAtInfinity).write(to: URL(fileURLWithPath: directory + "/infinity.der"))
        let reference = try openssl(["req", "-inform", "DER", "-in", directory + "/infinity.der", "-noout", "-verify"])
        XCTAssertEqual(reference.status, 0, "OpenSSL verifies the forged signature: \(reference.stderr)")
        // Signed, it would be a certificate whose signatures anyone can make.
        assertCSRRefused(Self.pointAtInfinity, .malformed, "CSR carries no usable public key", "the point at infinity")
    }

    /// A P-256 request whose key BIT STRING declares 1 unused bit (its last byte is even, so
    /// d2i_X509_REQ read the same point and verified the request; Vouch now refuses it).
    static let keyWithUnusedBits = bytes([
        "308201113081b9020100300f310d300b060355040a0c04746573743059301306072a8648ce3d020106082a8648ce3d03",
        "010703420104775977d3b5e83467cb2601030bd541c3ee590cc5619a1a13a5cb3dfc4323028d8c3c1ec6c0ad0de190ed",
        "0315509da91af5c4a51ccc5614a43a93c5fcbded6358a048304606092a864886f70d01090e3139303730350603551d11",
        "042e302c861c7370696666653a2f2f6578616d706c652e6f72672f7376632f776562820c7765622e696e7465726e616c",
        "300a06082a8648ce3d040302034700304402207cc8e12963f3f19c03dfa2efe5ee645591c1fdd04ad6495302b2eff07e",
        "516727022026e1611a28823a1b151b8961949e614ee527bb2dd881f59bd0c5d3ab60f281c8",
    ])

    /// An Ed25519 key's bytes labelled X25519 (1.3.101.110), signed by that Ed25519 key.
    static let x25519Key = bytes([
        "3081d730818a020100300f310d300b060355040a0c0474657374302a300506032b656e032100216c0ab075be0b75faa3",
        "a389a872deaa810a2fa452c92cd28b259e71648b8f4ba048304606092a864886f70d01090e3139303730350603551d11",
        "042e302c861c7370696666653a2f2f6578616d706c652e6f72672f7376632f776562820c7765622e696e7465726e616c",
        "300506032b65700341006b081897cf734e718bf34feb30cead2c2ce284d6096cb12b9f1abd456181b2304003d67d312f",
        "09643c4e4a012797b28d51a9643ea7694f0b57021480a7c73f02",
    ])

    func testPartialKeyBytesAndAnX25519KeyAreRefused() {
        assertCSRRefused(Self.keyWithUnusedBits, .malformed, "CSR carries no usable public key", "unused bits in the key")
        // An agreement key cannot sign: no signature algorithm verifies with it.
        assertCSRRefused(Self.x25519Key, .badSignature, "CSR signature does not verify (no proof of possession)", "an X25519 key")
    }

    func testASignatureAlgorithmOfAnotherKeyTypeIsNoProofOfPossession() throws {
        let ecdsaWithSHA256: [UInt8] = [0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        let sha256WithRSA: [UInt8] = [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00]
        let names = SubjectAltNames(uris: ["spiffe://example.org/svc/web"])
        for (algorithm, claimed) in [(KeyAlgorithm.rsa2048, ecdsaWithSHA256), (.p256, sha256WithRSA), (.ed25519, ecdsaWithSHA256)] {
            let csr = try DERParts(try CertificateSigningRequest.create(key: try PrivateKey(generating: algorithm), subjectAltNames: names).der)
            // The request and its signature as made, under another key type's algorithm.
            let relabelled = derTLV(0x30, csr.element([0]) + claimed + csr.element([2]))
            assertCSRRefused(relabelled, .badSignature, "CSR signature does not verify (no proof of possession)", "\(algorithm) as \(claimed[4...])")
        }
    }

    /// P-521, secp256k1, brainpool and Ed448 requests still parse and verify, and are described as
    /// before, so policy refuses them with the same message ("CSR key EC secp521r1 is not accepted ...").
    func testKeysOutsidePolicyAreDescribedAsBeforeAndNotAccepted() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (options, expected) in [
            (["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"], "EC secp521r1"),
            (["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1"], "EC secp256k1"),
            (["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:brainpoolP256r1"], "EC brainpoolP256r1"),
            (["-algorithm", "ED448"], "unknown key (456 bits)"),
        ] {
            let key = directory + "/key.pem", request = directory + "/csr.der"
            XCTAssertEqual(try openssl(["genpkey"] + options + ["-out", key]).status, 0, expected)
            XCTAssertEqual(try openssl(["req", "-new", "-key", key, "-subj", "/O=test", "-outform", "DER", "-out", request]).status, 0, expected)
            let csr = try CertificateSigningRequest(der: Array(try Data(contentsOf: URL(fileURLWithPath: request))))
            XCTAssertEqual(csr.publicKeyDescription.description, expected)
            XCTAssertFalse(csr.publicKeyDescription.isAcceptedForLeaf, expected)
        }
    }

    // MARK: Client certificate chains

    /// A CA of Vouch's shape made with swift-certificates, so that key identifiers can be wrong on purpose.
    struct Authority {
        let key: Certificate.PrivateKey
        let certificate: Certificate
        var name: DistinguishedName { certificate.subject }
        var keyID: ArraySlice<UInt8> { SubjectKeyIdentifier(hash: key.publicKey).keyIdentifier }
    }

    static func newKey() throws -> Certificate.PrivateKey {
        try Certificate.PrivateKey(pemEncoded: try PrivateKey(generating: .p256).pkcs8PEM())
    }

    static func certificate(subject: DistinguishedName, key: Certificate.PublicKey, issuer: DistinguishedName,
                            issuerKey: Certificate.PrivateKey, isAuthority: Bool, pathLength: Int = 0, keyID: ArraySlice<UInt8>?,
                            authorityKeyID: ArraySlice<UInt8>?, notAfter: Date = Date().addingTimeInterval(3600)) throws -> Certificate {
        try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key,
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: notAfter, issuer: issuer, subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                if isAuthority {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: pathLength))
                    Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                } else {
                    Critical(BasicConstraints.notCertificateAuthority)
                    SubjectAlternativeNames([.uniformResourceIdentifier("spiffe://example.org/svc/web")])
                }
                if let keyID { SubjectKeyIdentifier(keyIdentifier: keyID) }
                if let authorityKeyID { AuthorityKeyIdentifier(keyIdentifier: authorityKeyID) }
            },
            issuerPrivateKey: issuerKey)
    }

    static func root(_ commonName: String) throws -> Authority {
        let key = try newKey(), name = try DistinguishedName { CommonName(commonName) }
        let keyID = SubjectKeyIdentifier(hash: key.publicKey).keyIdentifier
        return Authority(key: key, certificate: try certificate(subject: name, key: key.publicKey, issuer: name, issuerKey: key,
                                                                isAuthority: true, pathLength: 1, keyID: keyID, authorityKeyID: keyID))
    }

    /// An intermediate named `commonName` under `parent`, with `keyID` as its subject key identifier
    /// (by default the hash of its key, as Vouch writes it).
    static func intermediate(_ commonName: String, under parent: Authority, keyID: ArraySlice<UInt8>? = nil,
                             notAfter: Date = Date().addingTimeInterval(3600)) throws -> Authority {
        let key = try newKey()
        return Authority(key: key, certificate: try certificate(
            subject: try DistinguishedName { CommonName(commonName) }, key: key.publicKey, issuer: parent.name, issuerKey: parent.key,
            isAuthority: true, keyID: keyID ?? SubjectKeyIdentifier(hash: key.publicKey).keyIdentifier,
            authorityKeyID: parent.keyID, notAfter: notAfter))
    }

    /// A leaf signed by `issuer`, naming `authorityKeyID` (by default the issuer's) as its issuer's key.
    static func leaf(signedBy issuer: Authority, authorityKeyID: ArraySlice<UInt8>?? = .none,
                     notAfter: Date = Date().addingTimeInterval(3600)) throws -> Certificate {
        let key = try newKey()
        return try certificate(subject: try DistinguishedName { CommonName("web") }, key: key.publicKey, issuer: issuer.name,
                               issuerKey: issuer.key, isAuthority: false, keyID: SubjectKeyIdentifier(hash: key.publicKey).keyIdentifier,
                               authorityKeyID: authorityKeyID ?? issuer.keyID, notAfter: notAfter)
    }

    /// Runs the verifier's callback on `presented` as NIOSSL does; true when it accepts.
    static func accepts(_ verifier: PeerCertificateVerifier, _ presented: [Certificate]) async throws -> Bool {
        let promise = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: NIOSSLVerificationResultWithMetadata.self)
        verifier.verify(try presented.map { try NIOSSLCertificate(bytes: $0.der, format: .der) }, promise)
        if case .certificateVerified = try await promise.futureResult.get() { return true }
        return false
    }

    func testPresentedKnownAndForeignIntermediatesAreJudgedByTheirSignaturesOnly() async throws {
        let root = try Self.root("Vouch Root"), foreignRoot = try Self.root("Other Root")
        let known = try Self.intermediate("Vouch Intermediate", under: root)
        // Another CA's intermediate with the same name and the same key identifier, but its own key.
        let impostor = try Self.intermediate("Vouch Intermediate", under: foreignRoot, keyID: known.keyID)
        let rejections = Rejections()
        let verifier = try PeerCertificateVerifier(rootsPEM: try root.certificate.pem, intermediatesPEM: try known.certificate.pem,
                                                   onReject: rejections.append)
        let leaf = try Self.leaf(signedBy: known), leafWithoutKeyID = try Self.leaf(signedBy: known, authorityKeyID: .some(nil))
        for (presented, what) in [
            ([leaf, known.certificate], "leaf and the known intermediate"), ([leaf], "the leaf alone"),
            ([leaf, known.certificate, known.certificate], "the intermediate twice"), ([leaf, leaf, known.certificate], "the leaf twice"),
            ([leaf, impostor.certificate], "leaf and the impostor"), ([leaf, root.certificate], "leaf and a copy of the root"),
            ([leaf, root.certificate, known.certificate], "leaf, root, intermediate"),
            ([leafWithoutKeyID, known.certificate], "a leaf without AKI"), ([leafWithoutKeyID], "a leaf without AKI, alone"),
        ] {
            let accepted = try await Self.accepts(verifier, presented)
            XCTAssertTrue(accepted, "\(what): \(rejections.all)")
        }
        XCTAssertEqual(rejections.all, [])

        // The impostor's own leaves, whatever they present, do not chain to Vouch's root.
        let impostorLeaf = try Self.leaf(signedBy: impostor)
        for presented in [[impostorLeaf, impostor.certificate], [impostorLeaf], [impostorLeaf, known.certificate],
                          [impostorLeaf, impostor.certificate, foreignRoot.certificate]] {
            let accepted = try await Self.accepts(verifier, presented)
            XCTAssertFalse(accepted)
        }
        XCTAssertEqual(rejections.all.count, 4)
        for reason in rejections.all {
            XCTAssertTrue(reason.hasPrefix("certificate \(impostorLeaf.serialHex) does not chain to a trusted root"), reason)
        }
    }

    /// RFC 5280 path validation does not read key identifiers: a leaf the known intermediate signed
    /// chains through it even when its AKI names another same-named intermediate's key, whether
    /// or not the peer presents the intermediate (a peer presenting it must not fare worse than one
    /// presenting an unknown copy).
    func testALeafWhoseAuthorityKeyIDNamesAnotherIntermediateChainsThroughItsSigner() async throws {
        let root = try Self.root("Vouch Root")
        let current = try Self.intermediate("Vouch Intermediate", under: root)
        let previous = try Self.intermediate("Vouch Intermediate", under: root)
        let rejections = Rejections()
        let verifier = try PeerCertificateVerifier(
            rootsPEM: try root.certificate.pem, intermediatesPEM: try Certificate.pemBundle([previous.certificate, current.certificate]),
            onReject: rejections.append)
        let misnamed = try Self.leaf(signedBy: current, authorityKeyID: .some(previous.keyID))
        for (presented, what) in [([misnamed, current.certificate], "with its signer"), ([misnamed], "alone")] {
            let accepted = try await Self.accepts(verifier, presented)
            XCTAssertTrue(accepted, "\(what): \(rejections.all)")
        }
        // The same intermediate unknown to the trust, presented by the peer: accepted.
        let unaware = try PeerCertificateVerifier(rootsPEM: try root.certificate.pem, intermediatesPEM: try previous.certificate.pem)
        let acceptedUnaware = try await Self.accepts(unaware, [misnamed, current.certificate])
        XCTAssertTrue(acceptedUnaware)
    }

    func testARevokedOrExpiredKnownIntermediatePresentedByThePeerIsRefused() async throws {
        let root = try Self.root("Vouch Root")
        let revoked = try Self.intermediate("Vouch Intermediate", under: root)
        let expired = try Self.intermediate("Vouch Intermediate Expired", under: root, notAfter: Date().addingTimeInterval(-60))
        let current = try Self.intermediate("Vouch Intermediate", under: root)
        let rejections = Rejections()
        let verifier = try PeerCertificateVerifier(
            rootsPEM: try root.certificate.pem,
            intermediatesPEM: try Certificate.pemBundle([revoked.certificate, expired.certificate, current.certificate]),
            isRevokedByIssuer: { certificate, _ in certificate.serialHex == revoked.certificate.serialHex },
            onReject: rejections.append)
        for presented in [[try Self.leaf(signedBy: revoked), revoked.certificate], [try Self.leaf(signedBy: revoked)]] {
            let accepted = try await Self.accepts(verifier, presented)
            XCTAssertFalse(accepted)
        }
        XCTAssertEqual(rejections.all, Array(repeating: "intermediate \(revoked.certificate.serialHex) is revoked", count: 2))

        let underExpired = try Self.leaf(signedBy: expired)
        let acceptedExpired = try await Self.accepts(verifier, [underExpired, expired.certificate])
        XCTAssertFalse(acceptedExpired)
        XCTAssertTrue(rejections.all.last?.hasPrefix("certificate \(underExpired.serialHex) does not chain to a trusted root") == true,
                      "\(rejections.all)")
        let acceptedCurrent = try await Self.accepts(verifier, [try Self.leaf(signedBy: current), current.certificate])
        XCTAssertTrue(acceptedCurrent, "\(rejections.all)")
    }

    /// The expiry grace validates again at the leaf's last valid second, with the same shortcuts:
    /// after a rotation (two intermediates of one name) a leaf expired within the grace is accepted,
    /// one expired longer ago is refused.
    func testTheExpiryGraceWorksThroughRotatedIntermediates() async throws {
        let root = try Self.root("Vouch Root")
        let previous = try Self.intermediate("Vouch Intermediate", under: root), current = try Self.intermediate("Vouch Intermediate", under: root)
        let rejections = Rejections()
        let verifier = try PeerCertificateVerifier(
            rootsPEM: try root.certificate.pem, intermediatesPEM: try Certificate.pemBundle([previous.certificate, current.certificate]),
            onReject: rejections.append, expiredGrace: 600)
        let recent = try Self.leaf(signedBy: current, notAfter: Date().addingTimeInterval(-60))
        let old = try Self.leaf(signedBy: previous, notAfter: Date().addingTimeInterval(-1200))
        let acceptedRecent = try await Self.accepts(verifier, [recent, current.certificate])
        XCTAssertTrue(acceptedRecent, "\(rejections.all)")
        let acceptedOld = try await Self.accepts(verifier, [old, previous.certificate])
        XCTAssertFalse(acceptedOld)
        XCTAssertEqual(rejections.all.count, 1)
        XCTAssertTrue(rejections.all.first?.hasPrefix("certificate \(old.serialHex) does not chain to a trusted root") == true, "\(rejections.all)")
    }

    /// The agent's verifier of the CA server knows roots only: presented intermediates are offered,
    /// a presented copy of a root is not needed, and a same-named intermediate of another root is no path.
    func testTheServerVerifierTakesOnlyPresentedIntermediatesThatChain() async throws {
        func authority(_ name: String, pathLength: Int) throws -> CertificateTemplate {
            CertificateTemplate(role: .authority(pathLength: pathLength), serial: try SerialNumber.random(), subject: [("CN", name)],
                                notBefore: Date().addingTimeInterval(-60), notAfter: Date().addingTimeInterval(3600))
        }
        func signer(_ certificate: (PrivateKey) throws -> X509Certificate) throws -> CertificateSigner {
            let key = try PrivateKey(generating: .p256)
            return try CertificateSigner(certificate: try certificate(key), key: key)
        }
        let root = try signer { try CertificateSigner.selfSigned(key: $0, template: try authority("Vouch Root", pathLength: 1)) }
        let otherRoot = try signer { try CertificateSigner.selfSigned(key: $0, template: try authority("Other Root", pathLength: 1)) }
        let intermediate = try signer { try root.sign(publicKeyOf: $0, template: try authority("Vouch Intermediate", pathLength: 0)) }
        let impostor = try signer { try otherRoot.sign(publicKeyOf: $0, template: try authority("Vouch Intermediate", pathLength: 0)) }
        let leaf = try intermediate.sign(publicKeyOf: try PrivateKey(generating: .p256), template: CertificateTemplate(
            role: .leaf, serial: try SerialNumber.random(), subject: [("O", "Vouch")], notBefore: Date().addingTimeInterval(-60),
            notAfter: Date().addingTimeInterval(3600),
            subjectAltNames: SubjectAltNames(uris: ["spiffe://example.org/vouch/server"], ipAddresses: ["127.0.0.1"])))
        let verifier = try ServerCertificateVerifier(rootsPEM: root.certificate.pem, host: "127.0.0.1", isIPAddress: true,
                                                     expected: .vouchServer(trustDomain: "example.org"))
        func accepted(_ presented: [X509Certificate]) async throws -> Bool {
            let promise = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: NIOSSLVerificationResultWithMetadata.self)
            verifier.verify(try presented.map { try NIOSSLCertificate(bytes: $0.der, format: .der) }, promise)
            if case .certificateVerified = try await promise.futureResult.get() { return true }
            return false
        }
        for presented in [[leaf, intermediate.certificate], [leaf, root.certificate, intermediate.certificate],
                          [leaf, impostor.certificate, intermediate.certificate], [leaf, intermediate.certificate, intermediate.certificate]] {
            let ok = try await accepted(presented)
            XCTAssertTrue(ok, verifier.lastRejection ?? "")
        }
        for presented in [[leaf], [leaf, root.certificate], [leaf, impostor.certificate, otherRoot.certificate]] {
            let ok = try await accepted(presented)
            XCTAssertFalse(ok)
            XCTAssertTrue(verifier.lastRejection?.hasPrefix("the certificate of the server at 127.0.0.1 did not verify: ") == true,
                          verifier.lastRejection ?? "")
        }
    }
}

/// The reasons a verifier gave, in order.
private final class Rejections: Sendable {
    private let reasons = Mutex<[String]>([])
    var all: [String] { reasons.withLock { $0 } }
    func append(_ reason: String) { reasons.withLock { $0.append(reason) } }
}
