import Foundation
import XCTest

/// A throwaway SoftHSM2 token in a test's own directory. SoftHSM reads its configuration from the file
/// SOFTHSM2_CONF names, so every child that should see the token gets `environment`; the system's
/// /etc/softhsm and /var/lib/softhsm are never read or written.
final class SoftHSMToken {
    static let module = "/usr/lib/softhsm/libsofthsm2.so"
    static let soPin = "000000"

    let module = SoftHSMToken.module
    /// The directory the test gave; holds softhsm2.conf, the PIN files and `tokens/`.
    let directory: String
    let conf: String
    let tokenDirectory: String
    let label: String
    let pin: String
    /// Mode 0600, holding `pin` without a newline: what `--pkcs11-pin-file` takes.
    let pinFile: String
    /// The `<tokens>/<uuid>` directory SoftHSM made for this token, which `fail()` moves away.
    private let storeName: String

    /// For a `vouch` child (and pkcs11-tool, softhsm2-util): SOFTHSM2_CONF naming this directory's configuration.
    var environment: [String: String] { ["SOFTHSM2_CONF": conf] }

    /// Writes `<directory>/softhsm2.conf` with its own token directory and initializes a token labelled
    /// `label` with user PIN 123456, written to `<directory>/pin`.
    convenience init(label: String = "vouch-ca", in directory: String) throws {
        let conf = directory + "/softhsm2.conf"
        let tokens = directory + "/tokens"
        try FileManager.default.createDirectory(atPath: tokens, withIntermediateDirectories: true)
        try """
            directories.tokendir = \(tokens)
            objectstore.backend = file
            log.level = ERROR
            slots.removable = false

            """.write(toFile: conf, atomically: true, encoding: .utf8)
        try self.init(label: label, pin: "123456", pinFile: directory + "/pin", directory: directory, conf: conf)
    }

    private init(label: String, pin: String, pinFile: String, directory: String, conf: String) throws {
        self.label = label
        self.pin = pin
        self.pinFile = pinFile
        self.directory = directory
        self.conf = conf
        tokenDirectory = directory + "/tokens"
        let before = Set(try FileManager.default.contentsOfDirectory(atPath: tokenDirectory))
        let made = try execute("/usr/bin/softhsm2-util",
                               ["--init-token", "--free", "--label", label, "--so-pin", Self.soPin, "--pin", pin],
                               environment: ["SOFTHSM2_CONF": conf])
        guard made.status == 0 else {
            throw CLIFailure("softhsm2-util --init-token --label \(label) failed: \(made.stdout)\(made.stderr)")
        }
        let added = Set(try FileManager.default.contentsOfDirectory(atPath: tokenDirectory)).subtracting(before)
        guard added.count == 1, let store = added.first else {
            throw CLIFailure("softhsm2-util --init-token --label \(label) made \(added.sorted()) in \(tokenDirectory)")
        }
        storeName = store
        guard FileManager.default.createFile(atPath: pinFile, contents: Data(pin.utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw CLIFailure("cannot write \(pinFile)")
        }
    }

    /// A second token in the same token directory (so under the same SOFTHSM2_CONF), e.g. the root's,
    /// with a PIN of its own written to `<directory>/pin-<label>`. It fails and restores on its own.
    /// Neither label may begin with the other: pkcs11-tool's `--token-label` takes the first token whose
    /// label starts with the one given, and would log in to the wrong token.
    func initAnotherToken(label: String, pin: String = "654321") throws -> SoftHSMToken {
        guard !label.hasPrefix(self.label), !self.label.hasPrefix(label) else {
            throw CLIFailure("token labels \"\(self.label)\" and \"\(label)\": one begins with the other, which pkcs11-tool mixes up")
        }
        return try SoftHSMToken(label: label, pin: pin, pinFile: directory + "/pin-\(label)", directory: directory, conf: conf)
    }

    /// Moves the token's files out of the token directory: a process using it sees its objects vanish
    /// (CKR_OBJECT_HANDLE_INVALID), and a new C_Initialize finds no token with this label.
    func fail() throws {
        try FileManager.default.moveItem(atPath: tokenDirectory + "/" + storeName, toPath: failedPath)
    }

    /// Puts the token's files back where `fail()` took them from.
    func restore() throws {
        try FileManager.default.moveItem(atPath: failedPath, toPath: tokenDirectory + "/" + storeName)
    }

    private var failedPath: String { directory + "/failed-" + storeName }

    /// Every object of the token, private keys included (logged in), as pkcs11-tool prints them.
    func listObjects() throws -> String {
        let result = try pkcs11Tool(["--login", "--pin", pin, "--list-objects"])
        guard result.status == 0 else {
            throw CLIFailure("pkcs11-tool --list-objects on \"\(label)\" failed: \(result.stderr)")
        }
        return result.stdout
    }

    /// pkcs11-tool with `--module` and `--token-label` of this token in front of `arguments`; add
    /// `--login --pin \(pin)` where the call needs the user logged in. For example
    /// `["--login", "--pin", pin, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "k", "--id", "01"]`,
    /// `["--login", "--pin", pin, "--delete-object", "--type", "privkey", "--id", "01"]`,
    /// `["--login", "--pin", pin, "--change-pin", "--new-pin", "999999"]`.
    func pkcs11Tool(_ arguments: [String]) throws -> CommandResult {
        try execute("/usr/bin/pkcs11-tool", ["--module", module, "--token-label", label] + arguments,
                    environment: environment)
    }
}

/// A test with a SoftHSM2 token of its own, opened in this process: SOFTHSM2_CONF names the test's
/// token directory while it runs (the module reads it when it initializes, and is finalized with
/// its last open token, so the next test starts on its own directory).
class InProcessTokenTestCase: XCTestCase {
    var directory = ""
    var softHSM: SoftHSMToken!

    override func setUpWithError() throws {
        directory = try temporaryDirectory()
        softHSM = try SoftHSMToken(in: directory)
        setenv("SOFTHSM2_CONF", softHSM.conf, 1)
    }

    override func tearDown() {
        unsetenv("SOFTHSM2_CONF")
        try? FileManager.default.removeItem(atPath: directory)
    }
}
