import Foundation
import VouchCrypto
import XCTest

/// CA keys in a real SoftHSM2 token, in this process: what they sign verifies, they cannot leave the
/// token, concurrent signers share the token through pooled sessions, and a token that fails
/// answers `tokenUnavailable` until it recovers. Each test opens its own token directory
/// (SOFTHSM2_CONF is read when the module initializes, and the module is finalized with its last token).
final class TokenKeyTests: InProcessTokenTestCase {
    private func openToken() throws -> PKCS11Token {
        try PKCS11Token.open(module: softHSM.module, token: softHSM.label, pin: softHSM.pin)
    }

    private func authority(_ key: PrivateKey, name: String = "Token Root") throws -> CertificateSigner {
        let now = Date()
        let certificate = try CertificateSigner.selfSigned(key: key, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", name)],
            notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(3600)))
        return try CertificateSigner(certificate: certificate, key: key)
    }

    private func leafTemplate() throws -> CertificateTemplate {
        let now = Date()
        return CertificateTemplate(role: .authority(pathLength: 0), serial: try SerialNumber.random(),
                                   subject: [("CN", "Signed In The Token")],
                                   notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(600))
    }

    func testAGeneratedKeySignsCertificatesCRLsAndMessagesAndNeverLeavesTheToken() throws {
        let token = try openToken()
        let (reference, key) = try token.generateKey(label: "vouch-intermediate-test")
        XCTAssertTrue(key.isInToken)
        XCTAssertEqual(reference.token, softHSM.label)
        XCTAssertEqual(try TokenKeyReference(parsing: reference.description), reference)
        XCTAssertEqual(key.publicKeyDescription.curve, "prime256v1")

        let signer = try authority(key)
        XCTAssertTrue(signer.certificate.isSigned(by: signer.certificate), "self-signed in the token")
        let leaf = try signer.sign(publicKeyOf: try PrivateKey(generating: .p256), template: try leafTemplate())
        XCTAssertTrue(leaf.isSigned(by: signer.certificate))
        let crl = try CertificateRevocationList(der: signer.makeCRL(entries: [], number: 1, thisUpdate: Date(),
                                                                     nextUpdate: Date().addingTimeInterval(3600)))
        XCTAssertTrue(crl.isSigned(by: signer.certificate))
        let message = Array("checkpoint 7".utf8)
        XCTAssertTrue(try X509Certificate(der: signer.certificate.der).verifiesMessage(message, signature: try signer.signMessage(message)))

        XCTAssertThrowsError(try key.pkcs8PEM()) { error in
            XCTAssertEqual((error as? CryptoError)?.kind, .token)
            XCTAssertEqual("\(error)", "a key in PKCS#11 token \"\(softHSM.label)\" cannot be exported")
        }
        let listed = try softHSM.listObjects()
        XCTAssertTrue(listed.contains("label:      vouch-intermediate-test"), listed)
        XCTAssertTrue(listed.contains("Access:     sensitive, always sensitive, never extractable, local"), listed)
        XCTAssertFalse(listed.contains(", extractable"), listed)

        // Found again by its reference, as a restarted server would.
        let again = try token.key(reference)
        XCTAssertTrue(signer.certificate.matches(again))
    }

    func testConcurrentSignersShareTheTokenThroughPooledSessions() async throws {
        let token = try openToken()
        let signer = try authority(try token.generateKey(label: "pool").key)
        let message = Array("concurrent".utf8)
        let certificate = try X509Certificate(der: signer.certificate.der)
        let verified = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var good = 0
                    for _ in 0..<100 where certificate.verifiesMessage(message, signature: try signer.signMessage(message)) {
                        good += 1
                    }
                    return good
                }
            }
            return try await group.reduce(0, +)
        }
        XCTAssertEqual(verified, 800)
        XCTAssertEqual(token.status, .ok)
    }

    func testAFailedTokenAnswersUnavailableUntilItRecovers() throws {
        let token = try openToken()
        let signer = try authority(try token.generateKey(label: "fails").key)
        let message = Array("before".utf8)
        _ = try signer.signMessage(message)

        try softHSM.fail()
        XCTAssertThrowsError(try signer.signMessage(message)) { error in
            XCTAssertEqual((error as? CryptoError)?.kind, .tokenUnavailable)
            XCTAssertEqual("\(error)", "PKCS#11 token \"\(softHSM.label)\": CKR_OBJECT_HANDLE_INVALID")
        }
        guard case .failed(let reason, _) = token.status else { return XCTFail("status \(token.status)") }
        XCTAssertEqual(reason, "CKR_OBJECT_HANDLE_INVALID")
        XCTAssertThrowsError(try signer.sign(publicKeyOf: try PrivateKey(generating: .p256), template: try leafTemplate())) {
            XCTAssertEqual(($0 as? CryptoError)?.kind, .tokenUnavailable)
        }
        guard case .failed = token.recover() else { return XCTFail("recovered while the token is away") }

        try softHSM.restore()
        XCTAssertEqual(token.recover(), .ok)
        XCTAssertTrue(try X509Certificate(der: signer.certificate.der).verifiesMessage(message, signature: try signer.signMessage(message)))
        XCTAssertEqual(token.probe(), .ok)
    }

    /// The public key object alone proves nothing: a private key swapped in under the same id
    /// while the token was failed keeps the token failed after recovery instead of signing.
    func testRecoveryRefusesAPrivateKeySwappedUnderTheSameID() throws {
        let token = try openToken()
        let (reference, key) = try token.generateKey(label: "swapped")
        let signer = try authority(key)
        func tool(_ arguments: [String]) throws {
            let result = try softHSM.pkcs11Tool(["--login", "--pin", softHSM.pin] + arguments)
            XCTAssertEqual(result.status, 0, result.stderr)
        }
        try tool(["--keypairgen", "--key-type", "EC:prime256v1", "--label", "other", "--id", "ee"])
        try tool(["--delete-object", "--type", "privkey", "--id", reference.idHex])
        try tool(["--type", "privkey", "--id", "ee", "--set-id", reference.idHex])
        XCTAssertNotEqual(token.probe(), .ok, "the key's old handle is gone")

        guard case .failed(let reason, _) = token.recover() else { return XCTFail("status \(token.status)") }
        XCTAssertEqual(reason, "a key came back whose signatures do not verify with its public key; Vouch will not sign with it")
        XCTAssertThrowsError(try signer.signMessage(Array("after the swap".utf8))) {
            XCTAssertEqual(($0 as? CryptoError)?.kind, .tokenUnavailable)
        }
    }

    func testProbeNoticesAVanishedTokenWithoutSigning() throws {
        let token = try openToken()
        _ = try token.generateKey(label: "probed")
        XCTAssertEqual(token.probe(), .ok)
        try softHSM.fail()
        guard case .failed(let reason, _) = token.probe() else { return XCTFail("probe missed the failure") }
        XCTAssertTrue(reason.hasPrefix("CKR_"), reason)
        try softHSM.restore()
        XCTAssertEqual(token.recover(), .ok)
    }

    func testRecoveryNeverRetriesAPINTheTokenRefused() throws {
        let token = try openToken()
        _ = try token.generateKey(label: "pin")
        let changed = try softHSM.pkcs11Tool(["--login", "--pin", softHSM.pin, "--change-pin", "--new-pin", "999999"])
        XCTAssertEqual(changed.status, 0, changed.stderr)
        try softHSM.fail()
        XCTAssertNotEqual(token.probe(), .ok)
        try softHSM.restore()
        guard case .pinRefused(let reason) = token.recover() else { return XCTFail("status \(token.status)") }
        XCTAssertTrue(reason.contains("refused the PIN (CKR_PIN_INCORRECT); not retried"), reason)
        // Terminal: later recoveries do not log in again.
        guard case .pinRefused = token.recover() else { return XCTFail("status \(token.status)") }
    }

    func testKeysVouchWillNotSignWithAreRefusedByName() throws {
        func generate(_ arguments: [String]) throws {
            let made = try softHSM.pkcs11Tool(["--login", "--pin", softHSM.pin, "--keypairgen"] + arguments)
            XCTAssertEqual(made.status, 0, made.stderr)
        }
        try generate(["--key-type", "rsa:2048", "--label", "rsa", "--id", "0a"])
        try generate(["--key-type", "EC:prime256v1", "--label", "loose", "--id", "0b", "--extractable"])
        try generate(["--key-type", "EC:secp521r1", "--label", "p521", "--id", "0c"])
        let token = try openToken()
        func refusal(_ id: [UInt8], _ object: String) -> String {
            do {
                _ = try token.key(TokenKeyReference(token: softHSM.label, object: object, id: id))
                return "accepted"
            } catch {
                XCTAssertEqual((error as? CryptoError)?.kind, .token)
                return "\(error)"
            }
        }
        XCTAssertEqual(refusal([0x0a], "rsa"), "the key \"rsa\" in token \"vouch-ca\" is RSA: Vouch's CA keys are EC P-256 or P-384")
        XCTAssertEqual(refusal([0x0b], "loose"),
                       "the key \"loose\" in token \"vouch-ca\" can leave the token (CKA_EXTRACTABLE true): Vouch signs only with keys that cannot")
        XCTAssertEqual(refusal([0x0c], "p521"),
                       "the key \"p521\" in token \"vouch-ca\" is on a curve Vouch does not sign with (P-256 or P-384 only)")
        XCTAssertEqual(refusal([0x0d], "missing"), "token \"vouch-ca\" holds no private key with id 0d (object \"missing\")")
        XCTAssertEqual(refusal([0x0a], "not-its-label"), "token \"vouch-ca\" holds no private key with id 0a (object \"not-its-label\")")
        XCTAssertThrowsError(try token.key(TokenKeyReference(token: "other", object: "rsa", id: [0x0a]))) {
            XCTAssertEqual("\($0)", "the key pkcs11:token=other;object=rsa;id=%0a is in token \"other\", not in the configured token \"vouch-ca\"")
        }
    }

    func testOpeningRefusesEachBadConfigurationWithItsReason() throws {
        func refusal(module: String? = nil, token: String? = nil, pin: String? = nil) -> String {
            do {
                _ = try PKCS11Token.open(module: module ?? softHSM.module, token: token ?? softHSM.label, pin: pin ?? softHSM.pin)
                return "opened"
            } catch {
                XCTAssertEqual((error as? CryptoError)?.kind, .token)
                return "\(error)"
            }
        }
        XCTAssertEqual(refusal(module: "/nonexistent/libpkcs11.so"),
                       "cannot load PKCS#11 module /nonexistent/libpkcs11.so: /nonexistent/libpkcs11.so: cannot open shared object file: No such file or directory")
        XCTAssertEqual(refusal(module: "/usr/lib/x86_64-linux-gnu/libz.so.1"),
                       "/usr/lib/x86_64-linux-gnu/libz.so.1 is not a PKCS#11 module (no C_GetFunctionList)")
        XCTAssertEqual(refusal(token: "nope"), "no token labelled \"nope\" in \(softHSM.module) (tokens: \"vouch-ca\")")
        XCTAssertEqual(refusal(pin: "000001"),
                       "token \"vouch-ca\" refused the PIN (CKR_PIN_INCORRECT); not retried (hardware tokens lock after a few failures)")
        setenv("SOFTHSM2_CONF", directory + "/missing.conf", 1)
        XCTAssertEqual(refusal(), "PKCS#11 module \(softHSM.module) failed to initialize: CKR_GENERAL_ERROR (for SoftHSM: check SOFTHSM2_CONF and its directories.tokendir)")
        setenv("SOFTHSM2_CONF", softHSM.conf, 1)
        XCTAssertEqual(refusal(), "opened")
    }
}
