import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// A CA whose root and intermediate keys `vouch ca init` made in a SoftHSM2 token: the real server
/// issues, renews and revokes through it; CRL, OCSP and audit checkpoints verify with openssl and
/// Vouch; no CA key is a file; and a copy of the CA directory cannot sign.
final class TokenEndToEndTests: XCTestCase {
    func testEnrollRenewRevokeCRLOCSPAndCheckpointSignedInTheToken() async throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let softHSM = try SoftHSMToken(in: root)
        let flags = ["--pkcs11-module", softHSM.module, "--pkcs11-token", softHSM.label, "--pkcs11-pin-file", softHSM.pinFile]
        let ca = try CAFixture(initArguments: flags, environment: softHSM.environment) {
            try ServerProcess(directory: $0, extraArguments: ["--http", "127.0.0.1:0"] + flags, environment: softHSM.environment)
        }
        let caDir = ca.caDir

        // The keys are in the token, sensitive and never extractable; the directory holds no CA key.
        let objects = try softHSM.listObjects()
        let privateKeys = objects.components(separatedBy: "Private Key Object").dropFirst()
        XCTAssertEqual(privateKeys.count, 2, objects)
        for key in privateKeys {
            let access = key.split(separator: "\n").first { $0.contains("Access:") }.map(String.init) ?? ""
            XCTAssertEqual(access.trimmingCharacters(in: .whitespaces), "Access:     sensitive, always sensitive, never extractable, local", objects)
        }
        XCTAssertTrue(objects.contains("label:      vouch-root-") && objects.contains("label:      vouch-intermediate-"), objects)
        XCTAssertEqual(try privateKeyFiles(in: caDir), ["admin_key.pem", "server_key.pem"],
                       "only the TLS keys of the listener and the admin client are files")
        let rootCertificate = try X509Certificate(pem: String(contentsOfFile: caDir + "/root.pem", encoding: .utf8))
        let intermediate = try X509Certificate(pem: String(contentsOfFile: caDir + "/intermediate.pem", encoding: .utf8))
        for name in try privateKeyFiles(in: caDir) {
            let key = try PrivateKey(pem: String(contentsOfFile: caDir + "/" + name, encoding: .utf8))
            XCTAssertFalse(rootCertificate.matches(key) || intermediate.matches(key), "\(name) is a CA key")
        }

        // Enroll, renew, revoke through the server.
        let key1 = try PrivateKey(generating: .p256)
        let first = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/hsm"), key: key1)
        let leafPath = ca.root + "/leaf.pem"
        try X509Certificate(der: Array(first.certificate)).pem.write(toFile: leafPath, atomically: true, encoding: .utf8)
        let verified = try openssl(["verify", "-CAfile", caDir + "/root.pem", "-untrusted", caDir + "/intermediate.pem", leafPath])
        XCTAssertEqual(verified.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(leafPath): OK", verified.stderr)
        let identity = try ca.writeIdentity(first, key: key1, name: "hsm1")
        let key2 = try PrivateKey(generating: .p256)
        let second = try await ca.renew(with: identity, newKey: key2)
        XCTAssertTrue(try X509Certificate(der: Array(second.certificate)).isSigned(by: intermediate))
        let renewedIdentity = try ca.writeIdentity(second, key: key2, name: "hsm2")
        _ = try await ca.revoke(second.serial, reason: 1, as: renewedIdentity)

        // The CRL, signed in the token, lists it; openssl verifies the CRL and sees the leaf revoked.
        let http = try XCTUnwrap(ca.server.httpAddress)
        let crlPath = ca.root + "/crl.der"
        let fetched = try execute("/usr/bin/curl", ["-s", "--fail", "-o", crlPath, "http://\(http)/crl"])
        XCTAssertEqual(fetched.status, 0, fetched.stderr)
        let crlText = try openssl(["crl", "-inform", "DER", "-in", crlPath, "-noout", "-text", "-CAfile", caDir + "/intermediate.pem"])
        XCTAssertTrue(crlText.stderr.contains("verify OK"), crlText.stderr)
        XCTAssertTrue(crlText.stdout.contains(second.serial.uppercased()), crlText.stdout)
        let revokedPath = ca.root + "/revoked.pem"
        try X509Certificate(der: Array(second.certificate)).pem.write(toFile: revokedPath, atomically: true, encoding: .utf8)
        let crlPEM = ca.root + "/crl.pem"
        _ = try openssl(["crl", "-inform", "DER", "-in", crlPath, "-out", crlPEM])
        let checked = try openssl(["verify", "-crl_check", "-CAfile", caDir + "/root.pem", "-untrusted", caDir + "/intermediate.pem",
                                   "-CRLfile", crlPEM, revokedPath])
        XCTAssertTrue((checked.stdout + checked.stderr).contains("certificate revoked"), checked.stdout + checked.stderr)

        // OCSP responses signed in the token: good for the first, revoked for the second.
        for (path, status) in [(leafPath, "good"), (revokedPath, "revoked")] {
            let ocsp = try openssl(["ocsp", "-issuer", caDir + "/intermediate.pem", "-cert", path, "-url", "http://\(http)/ocsp",
                                    "-CAfile", caDir + "/root.pem"])
            XCTAssertTrue(ocsp.stderr.contains("Response verify OK"), ocsp.stderr + ocsp.stdout)
            XCTAssertTrue(ocsp.stdout.contains("\(path): \(status)"), ocsp.stdout)
        }

        // An audit checkpoint signed in the token verifies against the log.
        let checkpointPath = ca.root + "/checkpoint.txt"
        let checkpoint = try vouch("audit", "checkpoint", "--dir", caDir, "--server", ca.server.address, "--out", checkpointPath)
        XCTAssertEqual(checkpoint.status, 0, checkpoint.stderr)
        let audit = try vouch("audit", "verify", "--dir", caDir, "--checkpoint", checkpointPath)
        XCTAssertEqual(audit.status, 0, audit.stderr + audit.stdout)
    }

    func testACopyOfTheCADirectoryCannotSign() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let softHSM = try SoftHSMToken(in: root + "/hsm")
        let flags = ["--pkcs11-module", softHSM.module, "--pkcs11-token", softHSM.label, "--pkcs11-pin-file", softHSM.pinFile]
        let original = root + "/ca"
        let made = try vouch(["ca", "init", "--dir", original, "--trust-domain", "example.org"] + flags, environment: softHSM.environment)
        XCTAssertEqual(made.status, 0, made.stderr)
        let copy = root + "/copy"
        XCTAssertEqual(try execute("/bin/cp", ["-a", original, copy]).status, 0)

        // Whoever copied the directory has no token: the server does not start, nothing signs.
        let noToken = try vouch("server", "--dir", copy, "--listen", "127.0.0.1:0")
        XCTAssertNotEqual(noToken.status, 0)
        XCTAssertTrue(noToken.stderr.contains("PKCS#11 token \"vouch-ca\""), noToken.stderr)
        // Nor with a token of the same label that is not the CA's.
        let other = try SoftHSMToken(in: root + "/other-hsm")
        let otherFlags = ["--pkcs11-module", other.module, "--pkcs11-token", other.label, "--pkcs11-pin-file", other.pinFile]
        let wrongToken = try vouch(["server", "--dir", copy, "--listen", "127.0.0.1:0"] + otherFlags, environment: other.environment)
        XCTAssertNotEqual(wrongToken.status, 0)
        XCTAssertTrue(wrongToken.stderr.contains("token \"vouch-ca\" holds no private key with id"), wrongToken.stderr)
        let rotate = try vouch(["ca", "intermediate", "rotate", "--dir", copy] + otherFlags, environment: other.environment)
        XCTAssertNotEqual(rotate.status, 0)
        XCTAssertTrue(rotate.stderr.contains("holds no private key with id"), rotate.stderr)
        let crl = try vouch(["ca", "root", "crl", "--dir", copy] + otherFlags, environment: other.environment)
        XCTAssertNotEqual(crl.status, 0)
        XCTAssertTrue(crl.stderr.contains("holds no private key with id"), crl.stderr)
    }

    /// The server holds the token's PIN, and without --pkcs11-root-token the root key shares the
    /// token: a database row that names the root's key for an intermediate is refused before anything signs.
    func testADatabaseRowCannotPointTheServerAtTheRootKey() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let softHSM = try SoftHSMToken(in: root)
        let flags = ["--pkcs11-module", softHSM.module, "--pkcs11-token", softHSM.label, "--pkcs11-pin-file", softHSM.pinFile]
        let dir = root + "/ca"
        XCTAssertEqual(try vouch(["ca", "init", "--dir", dir, "--trust-domain", "example.org"] + flags, environment: softHSM.environment).status, 0)
        let first = try ServerProcess(directory: dir, extraArguments: flags, environment: softHSM.environment)
        XCTAssertEqual(first.stop(), 0)
        let settings = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/ca.json"))) as? [String: Any])
        let rootKey = try XCTUnwrap(settings["root_key"] as? String)
        let tampered = try execute("/usr/bin/sqlite3", [dir + "/vouch.db", "UPDATE issuer SET key_ref = '\(rootKey)' WHERE kind = 'intermediate'"])
        XCTAssertEqual(tampered.status, 0, tampered.stderr)

        let refused = try vouch(["server", "--dir", dir, "--listen", "127.0.0.1:0"] + flags, environment: softHSM.environment)
        XCTAssertNotEqual(refused.status, 0)
        let label = try TokenKeyReference(parsing: rootKey).object
        XCTAssertTrue(refused.stderr.contains("its key reference names \"\(label)\", not a key made for an intermediate (vouch-intermediate-…)"),
                      refused.stderr)
    }

    /// Names of the files under `directory` that hold a private key.
    private func privateKeyFiles(in directory: String) throws -> [String] {
        let enumerator = FileManager.default.enumerator(atPath: directory)
        var names: [String] = []
        while let name = enumerator?.nextObject() as? String {
            guard let text = try? String(contentsOfFile: directory + "/" + name, encoding: .utf8) else { continue }
            if text.contains("PRIVATE KEY-----") { names.append(name) }
        }
        return names.sorted()
    }
}
