import Foundation
import VouchCrypto
import XCTest

/// Rotation and the root's steps on a CA whose keys are in PKCS#11 tokens (SoftHSM2), the root's
/// in a token of its own whose PIN the server never gets: every new key is made in a token, never
/// extractable, and no CA key ever lands in the CA directory.
final class TokenRotationTests: XCTestCase {
    func testRotatePrepareAndRootCRLWithTheRootInItsOwnToken() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let token = try SoftHSMToken(in: directory)
        let rootToken = try token.initAnotherToken(label: "vouch-root")
        let dir = directory + "/ca"
        let environment = token.environment
        func run(_ arguments: [String]) throws -> CommandResult {
            let result = try vouch(arguments, environment: environment)
            XCTAssertEqual(result.status, 0, "\(arguments.prefix(3)): \(result.stderr)")
            return result
        }
        let intermediatePIN = ["--pkcs11-pin-file", token.pinFile]
        let rootPIN = ["--pkcs11-root-token", rootToken.label, "--pkcs11-root-pin-file", rootToken.pinFile]

        let initialized = try vouch(["ca", "init", "--dir", dir, "--trust-domain", "example.org", "--pkcs11-module", token.module,
                                     "--pkcs11-token", token.label] + intermediatePIN + rootPIN, environment: environment)
        XCTAssertEqual(initialized.status, 0, initialized.stderr)
        XCTAssertEqual(initialized.stderr, "", "a root token of its own: no warning")
        let settings = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/ca.json"))) as? [String: Any])
        XCTAssertEqual(settings["pkcs11_module"] as? String, token.module)
        XCTAssertEqual(settings["pkcs11_token"] as? String, "vouch-ca")
        XCTAssertEqual(try TokenKeyReference(parsing: try XCTUnwrap(settings["root_key"] as? String)).token, "vouch-root")
        XCTAssertEqual(try TokenKeyReference(parsing: try XCTUnwrap(settings["intermediate_key"] as? String)).token, "vouch-ca")

        // The server gets the intermediate token's PIN only, from its config file (module and token from ca.json).
        let config = directory + "/vouch.yaml"
        try "server:\n  pkcs11_pin_file: \(token.pinFile)\n".write(toFile: config, atomically: true, encoding: .utf8)
        let server = try ServerProcess(directory: dir, extraArguments: ["--config", config], environment: environment)
        defer { server.stop() }

        let rotated = try run(["ca", "intermediate", "rotate", "--dir", dir, "--json"] + intermediatePIN + rootPIN)
        let rotation = try json(rotated.stdout)
        let newIntermediate = try XCTUnwrap(rotation["serial"] as? String)
        let newKey = try TokenKeyReference(parsing: try XCTUnwrap(rotation["key"] as? String))
        XCTAssertEqual(newKey.token, "vouch-ca")
        XCTAssertTrue(newKey.object.hasPrefix("vouch-intermediate-"), newKey.object)
        XCTAssertTrue(eventually(timeout: 6) { server.log.contains("switched signing to intermediate \(newIntermediate)") }, server.log)

        // The first intermediate revoked with the root key from the root token (admin.pem is its: --force).
        let first = try X509Certificate(pem: String(contentsOfFile: dir + "/intermediate.pem", encoding: .utf8)).serialHex
        let revoked = try run(["ca", "intermediate", "revoke", first, "--dir", dir, "--reason", "superseded", "--force"] + rootPIN)
        XCTAssertTrue(revoked.stdout.hasPrefix("revoked intermediate \(first) (superseded)"), revoked.stdout)
        // An admin certificate signed by the new intermediate's token key.
        let admin = try run(["ca", "admin-cert", "--dir", dir, "--spiffe-id", "spiffe://example.org/vouch/ops", "--out", directory + "/ops"]
                            + intermediatePIN)
        XCTAssertTrue(admin.stdout.hasPrefix("issued admin certificate "), admin.stdout)
        XCTAssertTrue(try X509Certificate(pem: String(contentsOfFile: directory + "/ops/admin.pem", encoding: .utf8))
            .isSigned(by: try X509Certificate(pem: String(contentsOfFile: dir + "/issuers/\(newIntermediate)/certificate.pem", encoding: .utf8))))

        let prepared = try json(try run(["ca", "root", "prepare", "--dir", dir, "--json"] + intermediatePIN + rootPIN).stdout)
        let newRoot = try XCTUnwrap(prepared["root"] as? String)
        XCTAssertEqual(prepared["root_key"] as? String, dir + "/issuers/\(newRoot)/root_key.uri")
        let newRootKey = try TokenKeyReference(parsing: try String(contentsOfFile: dir + "/issuers/\(newRoot)/root_key.uri", encoding: .utf8)
            .trimmingCharacters(in: .newlines))
        XCTAssertEqual(newRootKey.token, "vouch-root")

        // The root CRL needs the root token alone; the root key's token comes from ca.json.
        let crl = try run(["ca", "root", "crl", "--dir", dir, "--pkcs11-root-pin-file", rootToken.pinFile])
        XCTAssertTrue(crl.stdout.hasPrefix("root CRL of "), crl.stdout)
        let withoutRootPIN = try vouch(["ca", "root", "crl", "--dir", dir] + intermediatePIN, environment: environment)
        XCTAssertEqual(withoutRootPIN.status, 1)
        XCTAssertEqual(withoutRootPIN.stderr, "vouch: the root key is in PKCS#11 token \"vouch-root\": pass --pkcs11-root-pin-file "
            + "(its user PIN) and --pkcs11-root-token vouch-root\n")

        // Two intermediate keys in the intermediate token, two root keys in the root token: all never extractable.
        let intermediates = try privateKeys(token.listObjects())
        XCTAssertEqual(intermediates.count, 3, "the initial and rotated intermediates, and the new root's intermediate")
        let roots = try privateKeys(rootToken.listObjects())
        XCTAssertEqual(roots.count, 2, "the first root and the prepared one")
        for key in intermediates + roots {
            XCTAssertTrue(key.contains("sensitive, always sensitive, never extractable"), key)
            XCTAssertFalse(key.contains(", extractable"), key)
        }
        XCTAssertTrue(roots.contains { $0.contains("label:      \(newRootKey.object)") }, roots.joined())
        XCTAssertTrue(intermediates.contains { $0.contains("label:      \(newKey.object)") }, intermediates.joined())
        XCTAssertEqual(try privateKeyFiles(in: dir), ["admin_key.pem", "server_key.pem"],
                       "only the listener's and the admin's TLS keys are files; no root or intermediate key")
        XCTAssertFalse(server.log.contains("cannot load the key"), server.log)
    }

    /// `ca init` with both keys in one SoftHSM2 token of `directory`: the token, the CA directory
    /// and what `ca init` printed (its status checked).
    private func initInOneToken(_ directory: String) throws -> (SoftHSMToken, String, CommandResult) {
        let token = try SoftHSMToken(in: directory)
        let dir = directory + "/ca"
        let initialized = try vouch(["ca", "init", "--dir", dir, "--trust-domain", "example.org", "--pkcs11-module", token.module,
                                     "--pkcs11-token", token.label, "--pkcs11-pin-file", token.pinFile], environment: token.environment)
        XCTAssertEqual(initialized.status, 0, initialized.stderr)
        return (token, dir, initialized)
    }

    func testRotateOnATokenCARefusesAFileKey() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (token, dir, initialized) = try initInOneToken(directory)
        XCTAssertEqual(initialized.stderr, "vouch: warning: the root key goes into token \"vouch-ca\" too: a server holding its PIN "
            + "can reach the root key; keep roots in a token of their own (--pkcs11-root-token and --pkcs11-root-pin-file)\n")

        let withoutToken = try vouch(["ca", "intermediate", "rotate", "--dir", dir], environment: token.environment)
        XCTAssertEqual(withoutToken.status, 1)
        XCTAssertEqual(withoutToken.stderr, "vouch: this CA keeps its keys in PKCS#11 token \"vouch-ca\": pass --pkcs11-pin-file "
            + "(the new intermediate's key is made there)\n")
        let inDirectory = try vouch(["ca", "intermediate", "rotate", "--dir", dir, "--key-in-directory", "--pkcs11-pin-file", token.pinFile],
                                    environment: token.environment)
        XCTAssertEqual(inDirectory.status, 1)
        XCTAssertEqual(inDirectory.stderr, "vouch: --key-in-directory: the new intermediate's key is made in PKCS#11 token \"vouch-ca\" "
            + "and never leaves it\n")
        // The root key shares the token: its PIN opens both.
        let rotated = try vouch(["ca", "intermediate", "rotate", "--dir", dir, "--pkcs11-pin-file", token.pinFile], environment: token.environment)
        XCTAssertEqual(rotated.status, 0, rotated.stderr)
        XCTAssertEqual(try privateKeys(token.listObjects()).count, 3)
        XCTAssertEqual(try privateKeyFiles(in: dir), ["admin_key.pem", "server_key.pem"])
    }

    /// `root prepare` makes the new root's and intermediate's keys, then cannot write the root key's
    /// URI (`issuers` is a file here): it fails, and both new keys are gone from the token.
    func testAFailedPrepareDestroysTheKeysItMade() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (token, dir, _) = try initInOneToken(directory)
        let before = try privateKeys(token.listObjects())
        XCTAssertEqual(before.count, 2)
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/issuers", contents: Data()))

        let prepared = try vouch(["ca", "root", "prepare", "--dir", dir, "--pkcs11-pin-file", token.pinFile], environment: token.environment)
        XCTAssertEqual(prepared.status, 1, prepared.stdout)
        XCTAssertTrue(prepared.stderr.contains("the root key goes into token \"vouch-ca\" too"), "the keys were made: \(prepared.stderr)")
        XCTAssertTrue(prepared.stderr.contains("Not a directory"), prepared.stderr)
        XCTAssertEqual(try privateKeys(token.listObjects()), before, "the keys the failed step made were destroyed")
        let status = try vouch(["ca", "root", "status", "--dir", dir], environment: token.environment)
        XCTAssertTrue(status.stdout.hasPrefix("root rollover: none"), status.stdout)
    }

    /// The private key objects pkcs11-tool lists, one text block each.
    private func privateKeys(_ listing: String) throws -> [String] {
        listing.components(separatedBy: "Private Key Object").dropFirst().map { block in
            block.components(separatedBy: "Public Key Object").first ?? ""
        }
    }

    /// Files under `dir` holding a PEM private key, by name.
    private func privateKeyFiles(in dir: String) throws -> [String] {
        let enumerator = try XCTUnwrap(FileManager.default.enumerator(atPath: dir))
        var found: [String] = []
        while let name = enumerator.nextObject() as? String {
            guard let text = try? String(contentsOfFile: dir + "/" + name, encoding: .utf8), text.contains("PRIVATE KEY-----") else { continue }
            found.append(name)
        }
        return found.sorted()
    }

    private func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
    }
}
