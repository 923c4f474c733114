import Foundation
import VouchCrypto
import XCTest

/// Each way the token holding the CA keys can be misconfigured, as an operator meets it: `vouch ca
/// init` or `vouch server` exits 1 with one line naming what to fix, before anything is made or
/// served. Real SoftHSM2 tokens, one per test (SoftHSMToken).
final class TokenConfigurationErrorTests: XCTestCase {
    private var directory = ""
    private var token: SoftHSMToken!

    override func setUpWithError() throws {
        directory = try temporaryDirectory()
        token = try SoftHSMToken(in: directory)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private var caDir: String { directory + "/ca" }

    private func initCA(module: String? = nil, tokenLabel: String? = nil, pinFile: String? = nil) throws -> CommandResult {
        try vouch(["ca", "init", "--dir", caDir, "--trust-domain", "example.org",
                   "--pkcs11-module", module ?? token.module, "--pkcs11-token", tokenLabel ?? token.label,
                   "--pkcs11-pin-file", pinFile ?? token.pinFile], environment: token.environment)
    }

    /// `ca init` refused with `line`, leaving no CA behind (and no key in the token).
    private func assertInitRefused(_ result: CommandResult, _ line: String, file: StaticString = #filePath, lineNumber: UInt = #line) {
        XCTAssertEqual(result.status, 1, file: file, line: lineNumber)
        XCTAssertEqual(result.stderr, "vouch: \(line)\n", file: file, line: lineNumber)
        XCTAssertFalse(FileManager.default.fileExists(atPath: caDir + "/ca.json"), "no CA was made", file: file, line: lineNumber)
    }

    /// A CA made in the token: its intermediate's key reference and serial.
    private func makeCA() throws -> (reference: TokenKeyReference, serial: String) {
        let made = try initCA()
        guard made.status == 0 else { throw CLIFailure("ca init failed: \(made.stderr)") }
        let settings = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: caDir + "/ca.json"))) as? [String: Any]
        let reference = try TokenKeyReference(parsing: try XCTUnwrap(settings?["intermediate_key"] as? String))
        let serial = try X509Certificate(pem: String(contentsOfFile: caDir + "/intermediate.pem", encoding: .utf8)).serialHex
        return (reference, serial)
    }

    /// A CA made in the token, then its intermediate key replaced by `tamper`; the server's refusal.
    private func serverRefusal(tamper: (TokenKeyReference) throws -> Void) throws -> (CommandResult, serial: String) {
        let (reference, serial) = try makeCA()
        try tamper(reference)
        return (try startServer(), serial)
    }

    /// `vouch server` expected to refuse at start (it would otherwise run: `execute` bounds it).
    private func startServer(_ extra: [String] = []) throws -> CommandResult {
        try vouch(["server", "--dir", caDir, "--listen", "127.0.0.1:0"] + (extra.isEmpty ? ["--pkcs11-pin-file", token.pinFile] : extra),
                  environment: token.environment)
    }

    private func deleteKeyPair(_ reference: TokenKeyReference) throws {
        for type in ["privkey", "pubkey"] {
            let deleted = try token.pkcs11Tool(["--login", "--pin", token.pin, "--delete-object", "--type", type, "--id", reference.idHex])
            guard deleted.status == 0 else { throw CLIFailure("pkcs11-tool --delete-object failed: \(deleted.stderr)") }
        }
    }

    private func generate(_ keyType: String, at reference: TokenKeyReference, extra: [String] = []) throws {
        let made = try token.pkcs11Tool(["--login", "--pin", token.pin, "--keypairgen", "--key-type", keyType, "--usage-sign",
                                         "--label", reference.object, "--id", reference.idHex] + extra)
        guard made.status == 0 else { throw CLIFailure("pkcs11-tool --keypairgen failed: \(made.stderr)") }
    }

    // MARK: Module, token, PIN (ca init)

    func testMissingModule() throws {
        let module = "/usr/lib/softhsm/libnothere.so"
        assertInitRefused(try initCA(module: module),
                          "cannot load PKCS#11 module \(module): \(module): cannot open shared object file: No such file or directory")
    }

    func testLibraryThatIsNotAModule() throws {
        let library = "/usr/lib/x86_64-linux-gnu/libz.so.1"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: library), "\(library) is not on this machine")
        assertInitRefused(try initCA(module: library), "\(library) is not a PKCS#11 module (no C_GetFunctionList)")
    }

    func testUnknownTokenLabel() throws {
        assertInitRefused(try initCA(tokenLabel: "no-such-token"),
                          "no token labelled \"no-such-token\" in \(token.module) (tokens: \"vouch-ca\")")
    }

    func testWrongPINRefusedOnceAndNotRetried() throws {
        let wrong = directory + "/wrong-pin"
        try "999999\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        assertInitRefused(try initCA(pinFile: wrong), "--pkcs11-pin-file \(wrong): token \"vouch-ca\" refused the PIN "
            + "(CKR_PIN_INCORRECT); not retried (hardware tokens lock after a few failures)")
    }

    func testEmptyPINFile() throws {
        let empty = directory + "/empty-pin"
        try "\n".write(toFile: empty, atomically: true, encoding: .utf8)
        assertInitRefused(try initCA(pinFile: empty), "--pkcs11-pin-file \(empty) is empty")
        assertInitRefused(try initCA(pinFile: directory + "/no-pin"),
                          "cannot read --pkcs11-pin-file \(directory)/no-pin (No such file or directory)")
    }

    /// A PIN file others can read still works (the token checks the PIN), with a warning naming it.
    func testPINFileOthersCanReadIsUsedWithAWarning() throws {
        XCTAssertEqual(chmod(token.pinFile, 0o644), 0)
        let made = try initCA()
        XCTAssertEqual(made.status, 0, made.stderr)
        XCTAssertTrue(made.stderr.hasPrefix("vouch: warning: --pkcs11-pin-file \(token.pinFile) can be read or changed by others "
                                            + "than its owner (mode 0644); make it 0600\n"), made.stderr)
        XCTAssertEqual(chmod(token.pinFile, 0o600), 0)
        let again = try vouch(["ca", "root", "crl", "--dir", caDir, "--pkcs11-pin-file", token.pinFile], environment: token.environment)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertFalse(again.stderr.contains("can be read or changed by others"), again.stderr)
    }

    func testPassphraseWithTokenRefused() throws {
        let passphrase = directory + "/passphrase"
        try "secret".write(toFile: passphrase, atomically: true, encoding: .utf8)
        let result = try vouch(["ca", "init", "--dir", caDir, "--trust-domain", "example.org", "--passphrase-file", passphrase,
                                "--pkcs11-module", token.module, "--pkcs11-token", token.label, "--pkcs11-pin-file", token.pinFile],
                               environment: token.environment)
        assertInitRefused(result, "--passphrase-file: keys in a PKCS#11 token are protected by its PIN, not a passphrase")
    }

    // MARK: The server on a token CA

    func testServerWithoutTheTokenRefusesToStart() throws {
        let serial = try makeCA().serial
        let result = try vouch(["server", "--dir", caDir, "--listen", "127.0.0.1:0"], environment: token.environment)
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.stderr, "vouch: cannot load the key of issuer \(serial): its key is in PKCS#11 token \"vouch-ca\": "
            + "start with --pkcs11-module and --pkcs11-pin-file (or pkcs11_* in the config file)\n")
    }

    /// A CA made with key files whose intermediate was rotated into the token: without the token the
    /// server refuses, rather than sign with the retiring intermediate it can load.
    func testServerOfAFileCARotatedIntoTheTokenRefusesWithoutIt() throws {
        let made = try vouch(["ca", "init", "--dir", caDir, "--trust-domain", "example.org"], environment: token.environment)
        XCTAssertEqual(made.status, 0, made.stderr)
        let rotated = try vouch(["ca", "intermediate", "rotate", "--dir", caDir, "--json", "--pkcs11-module", token.module,
                                 "--pkcs11-token", token.label, "--pkcs11-pin-file", token.pinFile], environment: token.environment)
        XCTAssertEqual(rotated.status, 0, rotated.stderr)
        let serial = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(rotated.stdout.utf8)) as? [String: Any])["serial"] as? String
        let result = try vouch(["server", "--dir", caDir, "--listen", "127.0.0.1:0"], environment: token.environment)
        XCTAssertEqual(result.status, 1)
        // After the log line of the store it opened to read the issuers.
        XCTAssertEqual(result.stderr.split(separator: "\n").last.map(String.init), "vouch: cannot load the key of issuer "
            + "\(try XCTUnwrap(serial)): its key is in PKCS#11 token \"vouch-ca\": start with --pkcs11-module and --pkcs11-pin-file "
            + "(or pkcs11_* in the config file)")
        XCTAssertFalse(result.stderr.contains("listening"), result.stderr)
    }

    func testServerWithWrongPIN() throws {
        _ = try makeCA()
        let wrong = directory + "/wrong-pin"
        try "000000".write(toFile: wrong, atomically: true, encoding: .utf8)
        let result = try startServer(["--pkcs11-pin-file", wrong])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.stderr, "vouch: --pkcs11-pin-file \(wrong): token \"vouch-ca\" refused the PIN (CKR_PIN_INCORRECT); "
            + "not retried (hardware tokens lock after a few failures)\n")
    }

    func testUnknownKey() throws {
        var id = ""
        var object = ""
        let (result, serial) = try serverRefusal { reference in
            (id, object) = (reference.idHex, reference.object)
            let deleted = try token.pkcs11Tool(["--login", "--pin", token.pin, "--delete-object", "--type", "privkey", "--id", id])
            XCTAssertEqual(deleted.status, 0, deleted.stderr)
        }
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.stderr, "vouch: cannot load the key of issuer \(serial): token \"vouch-ca\" holds no private key "
            + "with id \(id) (object \"\(object)\")\n")
    }

    func testRSAKeyAtTheKeysID() throws {
        var object = ""
        let (result, serial) = try serverRefusal { reference in
            object = reference.object
            try deleteKeyPair(reference)
            try generate("rsa:2048", at: reference)
        }
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.stderr, "vouch: cannot load the key of issuer \(serial): the key \"\(object)\" in token \"vouch-ca\" "
            + "is RSA: Vouch's CA keys are EC P-256 or P-384\n")
    }

    func testAnotherECKeyAtTheKeysID() throws {
        let (result, serial) = try serverRefusal { reference in
            try deleteKeyPair(reference)
            try generate("EC:prime256v1", at: reference)
        }
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.stderr, "vouch: cannot load the key of issuer \(serial): the key found is not the key of its certificate\n")
    }

    func testExtractableKey() throws {
        var object = ""
        let (result, serial) = try serverRefusal { reference in
            object = reference.object
            try deleteKeyPair(reference)
            try generate("EC:prime256v1", at: reference, extra: ["--extractable"])
        }
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.stderr, "vouch: cannot load the key of issuer \(serial): the key \"\(object)\" in token \"vouch-ca\" "
            + "can leave the token (CKA_EXTRACTABLE true): Vouch signs only with keys that cannot\n")
    }
}
