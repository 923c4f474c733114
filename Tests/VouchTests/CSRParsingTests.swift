import Foundation
import VouchCrypto
import XCTest

/// Vouch reads CSRs with its own ASN.1 templates (csr.c) instead of d2i_X509_REQ: requests made by
/// `openssl req` and by Vouch itself parse, verify and carry their key and names for every key type,
/// the issued certificate carries the request's key bytes, and each kind of broken request is
/// refused with its own message.
final class CSRParsingTests: XCTestCase {
    static let names = SubjectAltNames(uris: ["spiffe://example.org/svc/web"], dnsNames: ["web.internal"],
                                       ipAddresses: ["10.0.0.1", "2001:db8::1"])
    static let opensslNames = "subjectAltName=URI:spiffe://example.org/svc/web,DNS:web.internal,IP:10.0.0.1,IP:2001:db8::1"
    var directory = ""

    override func setUpWithError() throws { directory = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    // MARK: Keys and requests made by openssl

    @discardableResult
    func run(_ arguments: [String]) throws -> CommandResult {
        let result = try openssl(arguments)
        guard result.status == 0 else { throw CLIFailure("openssl \(arguments.joined(separator: " ")): \(result.stderr)") }
        return result
    }

    func file(_ name: String) -> String { directory + "/" + name }
    func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: file(name)))) }

    /// `openssl genpkey` into `name`.pem; returns the path.
    func key(_ name: String, _ options: [String]) throws -> String {
        try run(["genpkey"] + options + ["-out", file(name + ".pem")])
        return file(name + ".pem")
    }

    func p256Key(_ name: String) throws -> String { try key(name, ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]) }

    /// A DER CSR from `openssl req -new` for the key at `keyPath`.
    func request(_ keyPath: String, _ extra: [String] = []) throws -> [UInt8] {
        let out = keyPath + ".csr"
        try run(["req", "-new", "-key", keyPath, "-subj", "/O=test", "-outform", "DER", "-out", out] + extra)
        return Array(try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    // MARK: Requests that parse

    func testP256AndP384RequestsFromOpenSSLAndFromVouchCarryTheirKeyAndNames() throws {
        for (algorithm, curve, bits) in [(KeyAlgorithm.p256, "P-256", 256), (.p384, "P-384", 384)] {
            let expected = bits == 256 ? "EC prime256v1" : "EC secp384r1"
            let made = try CertificateSigningRequest.create(key: try PrivateKey(generating: algorithm), subjectAltNames: Self.names)
            let fromOpenSSL = try CertificateSigningRequest(der: try request(
                try key(curve, ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:\(curve)"]), ["-addext", Self.opensslNames]))
            for (who, csr) in [("Vouch", made), ("openssl req", fromOpenSSL)] {
                XCTAssertEqual(csr.publicKeyDescription.description, expected, "\(curve) by \(who)")
                XCTAssertEqual(csr.publicKeyDescription.bits, bits, "\(curve) by \(who)")
                XCTAssertEqual(csr.subjectAltNames, Self.names, "\(curve) by \(who)")
            }
        }
    }

    func testRSAAndEd25519RequestsParseAndVerifyThroughTheGeneralDecoder() throws {
        for (name, options, expected, bits) in [
            ("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "RSA 2048", 2048),
            ("ed25519", ["-algorithm", "ED25519"], "Ed25519", 256),
        ] {
            let csr = try CertificateSigningRequest(der: try request(try key(name, options), ["-addext", Self.opensslNames]))
            XCTAssertEqual(csr.publicKeyDescription.description, expected)
            XCTAssertEqual(csr.publicKeyDescription.bits, bits, name)
            XCTAssertEqual(csr.subjectAltNames, Self.names, name)
        }
    }

    func testACompressedP256PointIsTheSameKeyAsItsUncompressedForm() throws {
        let keyPath = try p256Key("key")
        try run(["ec", "-in", keyPath, "-conv_form", "compressed", "-out", file("compressed.pem")])
        let compressed = try CertificateSigningRequest(der: try request(file("compressed.pem")))
        let point = try DERParts(compressed.publicKeyDER).value(at: [1])
        XCTAssertEqual(point.count, 1 + 33, "a compressed point: one unused-bits byte and 33 bytes")
        XCTAssertEqual(compressed.publicKeyDescription.description, "EC prime256v1")

        // The same key as a certificate carries it (uncompressed), and another key.
        try run(["req", "-x509", "-key", keyPath, "-subj", "/O=test", "-days", "1", "-out", file("key.crt")])
        let certificateKey = try X509Certificate(pem: String(contentsOfFile: file("key.crt"), encoding: .utf8)).publicKeyDER
        XCTAssertEqual(certificateKey.count, 91, "the certificate's point is uncompressed")
        XCTAssertTrue(try compressed.hasSameKey(asSubjectPublicKeyInfo: certificateKey[...]))
        XCTAssertFalse(try compressed.hasSameKey(asSubjectPublicKeyInfo: try PrivateKey(generating: .p256).publicKeyDER[...]))
        // And the other way round: an uncompressed request against the compressed stored key.
        let uncompressed = try CertificateSigningRequest(der: try request(keyPath))
        XCTAssertTrue(try uncompressed.hasSameKey(asSubjectPublicKeyInfo: try compressed.publicKeyDER[...]))
    }

    func testAPEMRequestParses() throws {
        let keyPath = try p256Key("key")
        try run(["req", "-new", "-key", keyPath, "-subj", "/O=test", "-addext", Self.opensslNames, "-out", file("csr.pem")])
        try run(["req", "-in", file("csr.pem"), "-outform", "DER", "-out", file("csr.der")])
        let csr = try CertificateSigningRequest(pem: String(contentsOfFile: file("csr.pem"), encoding: .utf8))
        XCTAssertEqual(csr.der, try bytes("csr.der"))
        XCTAssertEqual(csr.subjectAltNames, Self.names)
    }

    func testTheIssuedCertificateCarriesTheRequestsPublicKeyBytes() throws {
        let caKey = try PrivateKey(generating: .p256)
        let now = Date()
        let root = try CertificateSigner.selfSigned(key: caKey, template: CertificateTemplate(
            role: .authority(pathLength: 0), serial: try SerialNumber.random(), subject: [("CN", "csr test")],
            notBefore: now, notAfter: now.addingTimeInterval(3600)))
        let signer = try CertificateSigner(certificate: root, key: caKey)
        try run(["ec", "-in", try p256Key("p256"), "-conv_form", "compressed", "-out", file("compressed.pem")])
        let keys = [
            ("p256", file("p256.pem")), ("compressed", file("compressed.pem")),
            ("p384", try key("p384", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"])),
            ("rsa", try key("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])),
            ("ed25519", try key("ed25519", ["-algorithm", "ED25519"])),
            // RSA-PSS restricted to SHA-256: the one key type whose algorithm has SEQUENCE parameters.
            ("rsa-pss", try key("rsa-pss", ["-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048",
                                            "-pkeyopt", "rsa_pss_keygen_md:sha256"])),
        ]
        for (name, keyPath) in keys {
            let csr = try CertificateSigningRequest(der: try request(keyPath))
            let issued = try signer.sign(csr, template: CertificateTemplate(
                role: .leaf, serial: try SerialNumber.random(), subject: [], notBefore: now, notAfter: now.addingTimeInterval(60),
                subjectAltNames: Self.names))
            let received = try X509Certificate(der: issued.der)  // as the client reads it
            let privateKey = try PrivateKey(pem: String(contentsOfFile: keyPath, encoding: .utf8))
            XCTAssertEqual(try received.publicKeyDER, try csr.publicKeyDER, name)
            XCTAssertTrue(received.matches(privateKey), name)
            XCTAssertTrue(received.isSigned(by: root), name)
            // The signer's own copy carries the key only encoded: it still knows its key.
            XCTAssertTrue(issued.matches(privateKey), "\(name), as signed")
            XCTAssertFalse(issued.matches(caKey), "\(name), another key")
        }
    }

    // MARK: Requests that are refused

    func testEmptyOversizedAndTrailingBytesAreRefused() throws {
        assertCSRRefused([], .malformed, "CSR is empty", "empty")
        assertCSRRefused([UInt8](repeating: 0x30, count: 16 * 1024 + 1), .malformed, "CSR is 16385 bytes, more than 16384", "over 16 KiB")
        assertCSRRefused([UInt8](repeating: 0x30, count: 16 * 1024), .malformed, "CSR is not valid DER PKCS#10", "exactly 16 KiB: read, not valid")
        let csr = try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: Self.names).der
        assertCSRRefused(csr + [0x00], .malformed, "CSR is not valid DER PKCS#10", "one byte after the DER")
        assertCSRRefused(Array(csr.dropLast()), .malformed, "CSR is not valid DER PKCS#10", "one byte short")
    }

    /// A signature over a digest whose collisions can be made proves nothing about the key: refused
    /// before it is checked, whatever the key type; SHA-256 and up, and Ed25519 (no separate digest), pass.
    func testSignaturesOverSHA1OrMD5AreNoProofOfPossession() throws {
        let rsa = try key("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        let weak: [(String, [UInt8], String)] = [
            ("P-256 with SHA-1", try request(try p256Key("ec"), ["-sha1"]), "SHA-1"),
            ("RSA with SHA-1", try request(rsa, ["-sha1"]), "SHA-1"),
            ("RSA with MD5", try request(rsa, ["-md5"]), "MD5"),
            ("RSA-PSS with SHA-1", try request(rsa, ["-sha1", "-sigopt", "rsa_padding_mode:pss"]), "SHA-1"),
        ]
        for (what, der, digest) in weak {
            assertCSRRefused(der, .badSignature, "CSR is signed with \(digest), which no longer proves possession of its key; "
                + "sign it with SHA-256 or stronger", what)
        }
        for (what, der) in [("P-256 with SHA-384", try request(file("ec.pem"), ["-sha384"])),
                            ("RSA-PSS with SHA-256", try request(rsa, ["-sha256", "-sigopt", "rsa_padding_mode:pss"])),
                            ("Ed25519", try request(try key("ed", ["-algorithm", "ED25519"])))] {
            XCTAssertNoThrow(try CertificateSigningRequest(der: der), what)
        }
    }

    func testAnAlteredSignatureOrAnotherKeysSignatureIsNoProofOfPossession() throws {
        let csr = try request(try p256Key("a"), ["-addext", Self.opensslNames])
        var altered = csr
        altered[altered.count - 1] ^= 0x01  // the last byte of the signature's s
        assertCSRRefused(altered, .badSignature, "CSR signature does not verify (no proof of possession)", "a flipped signature byte")

        // A's request (key, names) with the signature B made over its own request.
        let a = try DERParts(csr), b = try DERParts(try request(try p256Key("b")))
        let spliced = derTLV(0x30, a.element([0]) + b.element([1]) + b.element([2]))
        assertCSRRefused(spliced, .badSignature, "CSR signature does not verify (no proof of possession)", "B's signature on A's request")
    }

    func testExplicitCurveParametersAreRefused() throws {
        let keyPath = try key("explicit", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-pkeyopt", "ec_param_enc:explicit"])
        let csr = try request(keyPath)
        // OpenSSL itself reads and verifies this request; Vouch takes named curves only.
        XCTAssertEqual(try openssl(["req", "-inform", "DER", "-in", keyPath + ".csr", "-noout", "-verify"]).status, 0)
        XCTAssertEqual(try DERParts(csr).elements(at: [0, 2, 0])[1].tag, 0x30, "the curve is a SEQUENCE of parameters")
        assertCSRRefused(csr, .malformed, "CSR carries no usable public key", "explicit P-256 parameters")
    }

    func testAPointOffTheCurveIsRefused() throws {
        let csr = try request(try p256Key("key"))
        var offCurve = csr
        let point = try DERParts(csr).range(at: [0, 2, 1])
        offCurve[point.upperBound - 1] ^= 0x01  // the last byte of y
        XCTAssertThrowsError(try CertificateSigningRequest(der: offCurve)) { error in
            let message = (error as? CryptoError)?.message ?? "\(error)"
            XCTAssertTrue(message.hasPrefix("CSR carries no usable public key") || message.hasPrefix("CSR signature does not verify"), message)
        }
        // Nor is it accepted as a stored key to compare with.
        let valid = try CertificateSigningRequest(der: csr)
        let offCurveKey = try DERParts(offCurve).element([0, 2])
        XCTAssertThrowsError(try valid.hasSameKey(asSubjectPublicKeyInfo: offCurveKey[...]))
    }

    func testAnUnknownKeyAlgorithmIsRefused() throws {
        var csr = try request(try p256Key("key"))
        let algorithm = try DERParts(csr).range(at: [0, 2, 0, 0])
        XCTAssertEqual(Array(csr[algorithm]), [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01], "id-ecPublicKey")
        csr[algorithm.upperBound - 1] = 0x7f  // 1.2.840.10045.2.127: no such key type
        assertCSRRefused(csr, .malformed, "CSR carries no usable public key", "an unknown key algorithm")
    }

    /// `fields` as a request's info, signed with the P-256 key at `keyPath` (ecdsa-with-SHA256) by openssl.
    func signed(_ fields: [UInt8], keyPath: String, algorithm: [UInt8]) throws -> [UInt8] {
        let info = derTLV(0x30, fields)
        try Data(info).write(to: URL(fileURLWithPath: file("info.der")))
        try run(["dgst", "-sha256", "-sign", keyPath, "-out", file("signature"), file("info.der")])
        let csr = derTLV(0x30, info + algorithm + derTLV(0x03, [0x00] + (try bytes("signature"))))
        try Data(csr).write(to: URL(fileURLWithPath: file("signed.der")))
        return csr
    }

    /// PKCS#10 requires the [0] attributes field, but OpenSSL's X509_REQ (and `openssl req`) accept a
    /// request without it, which is what Vouch did before it read CSRs with its own templates.
    func testARequestWithoutTheAttributesFieldIsReadAsOpenSSLReadsIt() throws {
        let keyPath = try p256Key("key")
        let parts = try DERParts(try request(keyPath))
        let fields = parts.elements(at: [0])
        XCTAssertEqual(fields.map(\.tag), [0x02, 0x30, 0x30, 0xa0])
        let csr = try signed(fields.dropLast().flatMap { Array(parts.bytes[$0.range]) }, keyPath: keyPath, algorithm: parts.element([1]))
        let reference = try openssl(["req", "-inform", "DER", "-in", file("signed.der"), "-noout", "-verify"])
        XCTAssertEqual(reference.status, 0, "openssl req reads and verifies it: \(reference.stderr)")

        let parsed = try CertificateSigningRequest(der: csr)
        XCTAssertEqual(parsed.publicKeyDescription.description, "EC prime256v1")
        XCTAssertTrue(parsed.subjectAltNames.isEmpty)
    }

    /// The names may come in Microsoft's older extension request attribute (1.3.6.1.4.1.311.2.1.14),
    /// which X509_REQ_get_extensions reads too.
    func testNamesInMicrosoftsExtensionRequestAttributeAreRead() throws {
        let keyPath = try p256Key("key")
        let parts = try DERParts(try request(keyPath, ["-addext", Self.opensslNames]))
        let attribute = parts.elements(at: [0, 3, 0])
        XCTAssertEqual(parts.value(at: [0, 3, 0, 0]), [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e], "extensionRequest")
        let microsoft: [UInt8] = [0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01, 0x0e]
        let attributes = derTLV(0xa0, derTLV(0x30, microsoft + parts.bytes[attribute[1].range]))
        let fields = parts.elements(at: [0]).prefix(3).flatMap { Array(parts.bytes[$0.range]) }
        let csr = try signed(fields + attributes, keyPath: keyPath, algorithm: parts.element([1]))
        let reference = try run(["req", "-inform", "DER", "-in", file("signed.der"), "-noout", "-verify", "-text"])
        XCTAssertTrue(reference.stdout.contains("URI:spiffe://example.org/svc/web"), reference.stdout)

        XCTAssertEqual(try CertificateSigningRequest(der: csr).subjectAltNames, Self.names)
    }
}

// MARK: Just enough DER to take a request apart and put it back together

struct DERElement {
    let tag: UInt8
    let range: Range<Int>
    let value: Range<Int>
}

struct DERParts {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) throws {
        self.bytes = bytes
        guard !Self.read(bytes, 0..<bytes.count).isEmpty else { throw CLIFailure("not DER") }
    }

    static func read(_ bytes: [UInt8], _ range: Range<Int>) -> [DERElement] {
        var elements: [DERElement] = []
        var index = range.lowerBound
        while index + 2 <= range.upperBound {
            var length = Int(bytes[index + 1]), header = 2
            if length & 0x80 != 0 {
                let count = length & 0x7f
                length = bytes[index + 2 ..< index + 2 + count].reduce(0) { $0 << 8 | Int($1) }
                header += count
            }
            let end = index + header + length
            guard end <= range.upperBound else { break }
            elements.append(DERElement(tag: bytes[index], range: index..<end, value: index + header..<end))
            index = end
        }
        return elements
    }

    /// The elements inside the one at `path` (indexes from the outermost SEQUENCE; [] is that SEQUENCE).
    func elements(at path: [Int]) -> [DERElement] {
        var current = Self.read(bytes, 0..<bytes.count)[0]
        for index in path { current = Self.read(bytes, current.value)[index] }
        return Self.read(bytes, current.value)
    }

    /// Where the content of the element at `path` is (without its tag and length).
    func range(at path: [Int]) -> Range<Int> { elements(at: Array(path.dropLast()))[path.last!].value }

    func value(at path: [Int]) -> [UInt8] { Array(bytes[range(at: path)]) }

    /// The whole element (tag, length, value) at `path`.
    func element(_ path: [Int]) -> [UInt8] { Array(bytes[elements(at: Array(path.dropLast()))[path.last!].range]) }
}

func derTLV(_ tag: UInt8, _ value: [UInt8]) -> [UInt8] {
    guard value.count >= 0x80 else { return [tag, UInt8(value.count)] + value }
    var length: [UInt8] = []
    var remaining = value.count
    while remaining > 0 { length.insert(UInt8(remaining & 0xff), at: 0); remaining >>= 8 }
    return [tag, 0x80 | UInt8(length.count)] + length + value
}
