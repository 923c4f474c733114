import Foundation
import VouchCrypto
import XCTest

/// The PKCS#11 module runs inside the process that holds the PIN, and its path may come from
/// ca.json: Vouch loads it only when no one but root or its own user can change the file or a
/// directory above it, and only by absolute path. Copies of SoftHSM's module stand for a library
/// someone else planted.
final class TokenModuleTrustTests: InProcessTokenTestCase {
    /// A copy of SoftHSM's module at `directory/<dir>/libp11.so` with these modes.
    private func plantModule(in dir: String, directoryMode: Int = 0o755, mode: Int = 0o755) throws -> String {
        let folder = directory + "/" + dir
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let module = folder + "/libp11.so"
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: SoftHSMToken.module).resolvingSymlinksInPath().path, toPath: module)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: module)
        try FileManager.default.setAttributes([.posixPermissions: directoryMode], ofItemAtPath: folder)
        return module
    }

    private func refusal(_ module: String) -> String {
        do {
            _ = try PKCS11Token.open(module: module, token: softHSM.label, pin: softHSM.pin)
            return "opened"
        } catch {
            XCTAssertEqual((error as? CryptoError)?.kind, .token)
            return "\(error)"
        }
    }

    private let rule = "Vouch loads only a module that no one but root or its own user can change (nor any directory above it)"

    func testModuleOthersCanChangeIsNeverLoaded() throws {
        let writable = try plantModule(in: "writable-file", mode: 0o666)
        XCTAssertEqual(refusal(writable), "PKCS#11 module \(writable): \(writable) is writable by others than its owner (mode 0666); \(rule)")
        let inOpenDirectory = try plantModule(in: "open-dir", directoryMode: 0o777)
        XCTAssertEqual(refusal(inOpenDirectory),
                       "PKCS#11 module \(inOpenDirectory): \(directory)/open-dir is writable by others than its owner (mode 0777); \(rule)")
        let foreign = try plantModule(in: "foreign")
        XCTAssertEqual(chown(foreign, 4242, 4242), 0)
        XCTAssertEqual(refusal(foreign), "PKCS#11 module \(foreign): \(foreign) is owned by uid 4242; \(rule)")
        // A link from an open directory is followed, and the file it names is what gets checked and loaded.
        let link = try plantModule(in: "link", directoryMode: 0o777) + ".link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: writable)
        XCTAssertEqual(refusal(link), "PKCS#11 module \(link): \(writable) is writable by others than its owner (mode 0666); \(rule)")
        // Missing, where someone else could create it before it is loaded.
        XCTAssertEqual(refusal(directory + "/open-dir/later.so"),
                       "PKCS#11 module \(directory)/open-dir/later.so: \(directory)/open-dir is writable by others than its owner (mode 0777); \(rule)")
        XCTAssertEqual(refusal("libsofthsm2.so"),
                       "PKCS#11 module libsofthsm2.so: give its absolute path (a bare name is searched for in the library path)")
        // The same library, owned and writable by this user alone: loaded.
        XCTAssertEqual(refusal(try plantModule(in: "kept")), "opened")
    }

    /// ca.json names the module a server loads by default: whoever can write the CA directory but not the
    /// module's cannot make the server load a library of theirs.
    func testServerRefusesTheModuleCAJSONNamesWhenOthersCanChangeIt() throws {
        let caDir = directory + "/ca"
        let made = try vouch(["ca", "init", "--dir", caDir, "--trust-domain", "example.org", "--pkcs11-module", softHSM.module,
                              "--pkcs11-token", softHSM.label, "--pkcs11-pin-file", softHSM.pinFile], environment: softHSM.environment)
        XCTAssertEqual(made.status, 0, made.stderr)
        let planted = try plantModule(in: "planted", mode: 0o666)
        let settingsPath = caDir + "/ca.json"
        var settings = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: settingsPath))) as? [String: Any])
        settings["pkcs11_module"] = planted
        try JSONSerialization.data(withJSONObject: settings).write(to: URL(fileURLWithPath: settingsPath))
        // Under timeout: a server that loaded the planted module would start serving and never exit.
        let result = try execute("/usr/bin/timeout", ["20", VouchBinary.path, "server", "--dir", caDir, "--listen", "127.0.0.1:0",
                                                      "--pkcs11-pin-file", softHSM.pinFile], environment: softHSM.environment)
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.stderr, "vouch: PKCS#11 module \(planted): \(planted) is writable by others than its owner (mode 0666); \(rule)\n")
    }
}
