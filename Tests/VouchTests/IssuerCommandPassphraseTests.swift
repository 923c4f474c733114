import Foundation
import VouchCrypto
import VouchSQLiteStore
import XCTest

/// On a CA whose keys are encrypted (`ca init --passphrase-file`), the keys `intermediate rotate`
/// and `root prepare` write are encrypted with the CA's passphrase: without it, or with another
/// one, they refuse before anything is written (even when --root-key is an unencrypted copy).
final class IssuerCommandPassphraseTests: XCTestCase {
    func testAMissingOrForeignPassphraseIsRefusedOnAnEncryptedCA() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-passphrase-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let dir = root + "/ca", right = root + "/right", wrong = root + "/wrong", plainRootKey = root + "/root_key_plain.pem"
        try "the CA passphrase".write(toFile: right, atomically: true, encoding: .utf8)
        try "another passphrase".write(toFile: wrong, atomically: true, encoding: .utf8)
        let made = try vouch("ca", "init", "--dir", dir, "--trust-domain", "example.org", "--passphrase-file", right)
        XCTAssertEqual(made.status, 0, made.stderr)
        // The operator's offline copy of the root key, unencrypted.
        XCTAssertEqual(try openssl(["pkey", "-in", dir + "/root_key.pem", "-passin", "file:" + right, "-out", plainRootKey]).status, 0)
        let runs: [[String]] = [
            ["ca", "intermediate", "rotate", "--dir", dir, "--root-key", plainRootKey],
            ["ca", "intermediate", "rotate", "--dir", dir, "--root-key", plainRootKey, "--passphrase-file", wrong],
            ["ca", "root", "prepare", "--dir", dir, "--root-key", plainRootKey],
            ["ca", "root", "prepare", "--dir", dir, "--root-key", plainRootKey, "--passphrase-file", wrong],
        ]
        for arguments in runs {
            let run = try execute(VouchBinary.path, arguments)
            XCTAssertEqual(run.status, 1, "\(arguments): \(run.stdout)")
            XCTAssertTrue(run.stderr.contains("passphrase"), run.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/issuers"), "\(arguments): a key was written")
            let snapshot = try await SQLiteAuthorityStore(path: dir + "/vouch.db").issuers()
            XCTAssertEqual(snapshot.issuers.count, 2, "\(arguments): issuers were recorded")
        }
        // With the CA's passphrase the new key is encrypted with it.
        let rotated = try vouch("ca", "intermediate", "rotate", "--dir", dir, "--root-key", plainRootKey, "--passphrase-file", right)
        XCTAssertEqual(rotated.status, 0, rotated.stderr)
        let serial = try XCTUnwrap(rotated.stdout.firstMatch(of: #/rotated the intermediate: ([0-9a-f]+) /#)?.1)
        let key = try String(contentsOfFile: dir + "/issuers/\(serial)/key.pem", encoding: .utf8)
        XCTAssertTrue(key.hasPrefix("-----BEGIN ENCRYPTED PRIVATE KEY-----"))
        XCTAssertNoThrow(try PrivateKey(pem: key, passphrase: "the CA passphrase"))
    }

    /// On PostgreSQL a replica's directory may hold no intermediate key file: the passphrase is then
    /// checked against the intermediate keys stored (encrypted) in the database.
    func testOnPostgresAForeignPassphraseIsCheckedAgainstTheKeysInTheDatabase() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-passphrase-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let dir = root + "/ca", replica = root + "/replica", right = root + "/right", wrong = root + "/wrong", plainRootKey = root + "/root_key_plain.pem"
        try "the CA passphrase".write(toFile: right, atomically: true, encoding: .utf8)
        try "another passphrase".write(toFile: wrong, atomically: true, encoding: .utf8)
        let database = TestPostgres.url(of: try await TestPostgres.shared.freshDatabase())
        XCTAssertEqual(try vouch("ca", "init", "--dir", dir, "--trust-domain", "example.org", "--passphrase-file", right, "--database", database).status, 0)
        XCTAssertEqual(try openssl(["pkey", "-in", dir + "/root_key.pem", "-passin", "file:" + right, "-out", plainRootKey]).status, 0)
        XCTAssertEqual(try vouch("ca", "intermediate", "rotate", "--dir", dir, "--passphrase-file", right, "--database", database).status, 0)
        // A replica's directory: no intermediate key file, the new key is in the database.
        try FileManager.default.copyItem(atPath: dir, toPath: replica)
        try FileManager.default.removeItem(atPath: replica + "/intermediate_key.pem")
        let run = try execute(VouchBinary.path, ["ca", "intermediate", "rotate", "--dir", replica, "--root-key", plainRootKey,
                                                 "--passphrase-file", wrong, "--database", database])
        XCTAssertEqual(run.status, 1, run.stdout)
        XCTAssertTrue(run.stderr.contains("the passphrase does not decrypt the key of intermediate "), run.stderr)
        XCTAssertTrue(run.stderr.hasSuffix(" in the database: it is not this CA's\n"), run.stderr)
        XCTAssertEqual(try vouch("ca", "intermediate", "rotate", "--dir", replica, "--root-key", plainRootKey,
                                 "--passphrase-file", right, "--database", database).status, 0)
    }
}
