import Foundation
import VouchCrypto
import XCTest

/// `vouch ca intermediate rotate`, `vouch ca root prepare|status|activate|retire` and
/// `vouch ca admin-cert` as an operator runs them: the files they write, their modes, their
/// one-line refusals and their JSON.
final class IssuerCommandTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    func testRotateThenRollTheRootOverFromTheCommandLine() async throws {
        let ca = try CAFixture()
        let dir = ca.caDir
        let web = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: try PrivateKey(generating: .p256))

        let rotated = try vouch("ca", "intermediate", "rotate", "--dir", dir)
        XCTAssertEqual(rotated.status, 0, rotated.stderr)
        let newIntermediate = try XCTUnwrap(rotated.stdout.firstMatch(of: #/rotated the intermediate: ([0-9a-f]+) now signs/#)?.1)
        XCTAssertNotNil(rotated.stdout.firstMatch(of: #/is retiring: [0-9]+ live certificates, the last expires /#), rotated.stdout)
        try assertKey(dir + "/issuers/\(newIntermediate)/key.pem", matches: dir + "/issuers/\(newIntermediate)/certificate.pem")

        let foreign = ca.root + "/foreign_key.pem"
        try PrivateKey(generating: .p256).pkcs8PEM().write(toFile: foreign, atomically: true, encoding: .utf8)
        let refusedKey = try vouch("ca", "root", "prepare", "--dir", dir, "--root-key", foreign)
        XCTAssertEqual(refusedKey.status, 1)
        let rootSerial = try X509Certificate(pem: String(contentsOfFile: dir + "/root.pem", encoding: .utf8)).serialHex
        XCTAssertEqual(refusedKey.stderr, "vouch: \(foreign) is not the key of the active root \(rootSerial)\n")
        let missingKey = try vouch("ca", "intermediate", "rotate", "--dir", dir, "--root-key", ca.root + "/nowhere.pem")
        XCTAssertEqual(missingKey.stderr, "vouch: --root-key \(ca.root)/nowhere.pem: cannot read it (needed for this step only; keep it offline)\n")

        let prepared = try vouch("ca", "root", "prepare", "--dir", dir, "--json")
        XCTAssertEqual(prepared.status, 0, prepared.stderr)
        let preparation = try json(prepared.stdout)
        let newRoot = try XCTUnwrap(preparation["root"] as? String), newRootKey = try XCTUnwrap(preparation["root_key"] as? String)
        XCTAssertEqual(newRootKey, dir + "/issuers/\(newRoot)/root_key.pem")
        try assertKey(newRootKey, matches: dir + "/issuers/\(newRoot)/certificate.pem")
        XCTAssertEqual(try X509Certificate.all(inPEM: String(contentsOfFile: dir + "/bundle.pem", encoding: .utf8)).map(\.serialHex),
                       [rootSerial, newRoot], "bundle.pem: the export of both roots")
        let inProgress = try vouch("ca", "intermediate", "rotate", "--dir", dir)
        XCTAssertEqual(inProgress.stderr, "vouch: root \(newRoot) is pending: finish the rollover first\n")

        let status = try json(try vouch("ca", "root", "status", "--dir", dir, "--json").stdout)
        XCTAssertEqual(status["stage"] as? String, "prepared")
        let agents = try XCTUnwrap(status["agents"] as? [String: Any])
        XCTAssertEqual(agents["live"] as? Int, 1)
        XCTAssertEqual(agents["confirmed"] as? Int, 0)
        XCTAssertEqual((agents["unconfirmed"] as? [[String: Any]])?.first?["serial"] as? String, web.serial)
        let next = try XCTUnwrap(status["next"] as? [String: Any])
        XCTAssertEqual(next["command"] as? String, "vouch ca root activate")
        XCTAssertEqual(next["safe"] as? Bool, false)

        let activate = try vouch("ca", "root", "activate", "--dir", dir)
        XCTAssertEqual(activate.status, 1)
        XCTAssertEqual(activate.stderr, "vouch: 1 live agent has not confirmed the new bundle (first: \(Self.web), serial \(web.serial)); "
            + "--force activates anyway: OpenSSL-based peers without the new root will refuse new certificates\n")
        let forced = try vouch("ca", "root", "activate", "--dir", dir, "--force")
        XCTAssertEqual(forced.status, 0, forced.stderr)

        let retire = try vouch("ca", "root", "retire", "--dir", dir)
        XCTAssertEqual(retire.status, 1)
        XCTAssertTrue(retire.stderr.hasPrefix("vouch: 1 live certificate still chains only to the old root (the last expires "), retire.stderr)
        XCTAssertTrue(retire.stderr.hasSuffix("; 1 agent has not confirmed; --force retires anyway: those certificates fail at every peer that drops the old root\n"),
                      retire.stderr)
        let retired = try json(try vouch("ca", "root", "retire", "--dir", dir, "--force", "--json").stdout)
        XCTAssertEqual(retired["forced"] as? Bool, true)
        let changed = (retired["changed"] as? [[String: Any]] ?? []).map { "\($0["kind"] ?? "") \($0["state"] ?? "")" }
        XCTAssertEqual(changed.sorted(), ["cross retired", "intermediate retired", "intermediate retired", "root retired"])
        XCTAssertEqual(try String(contentsOfFile: dir + "/bundle.pem", encoding: .utf8),
                       try String(contentsOfFile: dir + "/issuers/\(newRoot)/certificate.pem", encoding: .utf8), "bundle.pem: the new root alone")
        let after = try json(try vouch("ca", "root", "status", "--dir", dir, "--json").stdout)
        XCTAssertEqual(after["stage"] as? String, "none")
    }

    func testAdminCertRenewsInPlaceAndTheNewOneIsAnAdmin() async throws {
        let ca = try CAFixture()
        let dir = ca.caDir, admin = "spiffe://example.org/vouch/admin"
        let old = try X509Certificate(pem: String(contentsOfFile: dir + "/admin.pem", encoding: .utf8))
        let renewed = try vouch("ca", "admin-cert", "--dir", dir, "--spiffe-id", admin, "--out", dir)
        XCTAssertEqual(renewed.status, 0, renewed.stderr)
        let new = try X509Certificate(pem: String(contentsOfFile: dir + "/admin.pem", encoding: .utf8))
        XCTAssertNotEqual(new.serialHex, old.serialHex)
        XCTAssertTrue(renewed.stdout.hasPrefix("renewed admin certificate \(new.serialHex) for \(admin) until "), renewed.stdout)
        XCTAssertTrue(renewed.stdout.contains("(replaces \(old.serialHex))"), renewed.stdout)
        try assertKey(dir + "/admin_key.pem", matches: dir + "/admin.pem")
        let superseded = try execute("/usr/bin/sqlite3", [dir + "/vouch.db", "SELECT superseded_by FROM certificate WHERE serial = '\(old.serialHex)'"])
        XCTAssertEqual(superseded.stdout.trimmingCharacters(in: .whitespacesAndNewlines), new.serialHex)
        let listed = try vouch("cert", "list", "--dir", dir, "--server", ca.server.address, "--json")
        XCTAssertEqual(listed.status, 0, "the renewed certificate is an admin's: \(listed.stderr)")

        let other = try vouch("ca", "admin-cert", "--dir", dir, "--spiffe-id", "spiffe://example.org/ops/alice", "--out", dir)
        XCTAssertEqual(other.status, 1)
        XCTAssertEqual(other.stderr, "vouch: \(dir)/admin.pem holds the certificate of \(admin), not spiffe://example.org/ops/alice: choose another --out\n")
    }

    /// Servers refuse a chain through an intermediate its root revoked, so revoking the one admin.pem
    /// chains through would lock the operator out: refused (nothing changes) until admin.pem is
    /// renewed as the refusal says; a server.pem still under it is only a warning.
    func testIntermediateRevokeRefusesWhileAdminPemIsUnderItAndWarnsForServerPem() throws {
        let dir = try temporaryDirectory() + "/ca", admin = "spiffe://example.org/vouch/admin"
        defer { try? FileManager.default.removeItem(atPath: (dir as NSString).deletingLastPathComponent) }
        XCTAssertEqual(try vouch("ca", "init", "--dir", dir, "--trust-domain", "example.org").status, 0)
        let first = try X509Certificate(pem: String(contentsOfFile: dir + "/intermediate.pem", encoding: .utf8))
        // As a read-only directory leaves it at the rotation: server.pem still from the first intermediate.
        let server = try Data(contentsOf: URL(fileURLWithPath: dir + "/server.pem")), serverKey = try Data(contentsOf: URL(fileURLWithPath: dir + "/server_key.pem"))
        XCTAssertEqual(try vouch("ca", "intermediate", "rotate", "--dir", dir).status, 0)
        try server.write(to: URL(fileURLWithPath: dir + "/server.pem"))
        try serverKey.write(to: URL(fileURLWithPath: dir + "/server_key.pem"))
        let heldAdmin = try X509Certificate(pem: String(contentsOfFile: dir + "/admin.pem", encoding: .utf8))
        let heldServer = try X509Certificate(pem: String(decoding: server, as: UTF8.self))

        let refused = try vouch("ca", "intermediate", "revoke", first.serialHex, "--dir", dir, "--reason", "superseded")
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.stderr, "vouch: \(dir)/admin.pem (\(heldAdmin.serialHex)) was issued by intermediate \(first.serialHex): "
            + "renew it first with vouch ca admin-cert --dir \(dir) --spiffe-id \(admin) --out \(dir), or pass --force\n")

        // The advised renewal, then the revocation goes through (so the refusal revoked nothing), warning of server.pem.
        let renewed = try vouch("ca", "admin-cert", "--dir", dir, "--spiffe-id", admin, "--out", dir)
        XCTAssertEqual(renewed.status, 0, renewed.stderr)
        let revoked = try vouch("ca", "intermediate", "revoke", first.serialHex, "--dir", dir, "--reason", "superseded")
        XCTAssertEqual(revoked.status, 0, revoked.stderr)
        XCTAssertTrue(revoked.stdout.hasPrefix("revoked intermediate \(first.serialHex) (superseded): root CRL of "), revoked.stdout)
        XCTAssertEqual(revoked.stdout.split(separator: "\n").last.map(String.init),
                       "warning: \(dir)/server.pem (\(heldServer.serialHex)) was issued by intermediate \(first.serialHex), so clients "
                       + "refuse a server that falls back to it: reissue it with vouch ca server-cert --dir \(dir)")
        XCTAssertFalse(revoked.stdout.contains("admin.pem"), revoked.stdout)
    }

    /// On PostgreSQL the new key goes into the database encrypted with the CA passphrase, so replicas
    /// on a read-only directory need no new file; a CA without a passphrase keeps it in a file only when told.
    func testOnPostgresTheNewKeyIsStoredEncryptedOrRefusedWithoutAPassphrase() async throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let passphrase = root + "/passphrase"
        try "correct horse\n".write(toFile: passphrase, atomically: true, encoding: .utf8)
        let encrypted = try await TestPostgres.shared.freshDatabase(), plain = try await TestPostgres.shared.freshDatabase()
        for (dir, database, extra) in [(root + "/enc", encrypted, ["--passphrase-file", passphrase]), (root + "/plain", plain, [])] {
            let made = try execute(VouchBinary.path, ["ca", "init", "--dir", dir, "--trust-domain", "example.org",
                                                      "--database", TestPostgres.url(of: database)] + extra)
            XCTAssertEqual(made.status, 0, made.stderr)
        }
        let rotated = try vouch("ca", "intermediate", "rotate", "--dir", root + "/enc", "--database", TestPostgres.url(of: encrypted),
                                "--passphrase-file", passphrase)
        XCTAssertEqual(rotated.status, 0, rotated.stderr)
        XCTAssertTrue(rotated.stdout.contains("key: stored encrypted in the database (replicas switch within 2 s)"), rotated.stdout)
        XCTAssertEqual(try TestPostgres.shared.psql(encrypted, "SELECT key_ref, key_pem LIKE '-----BEGIN ENCRYPTED PRIVATE KEY-----%' FROM issuer WHERE state = 'active' AND kind = 'intermediate'"),
                       "database|t")
        let active = try TestPostgres.shared.psql(encrypted, "SELECT serial FROM issuer WHERE state = 'active' AND kind = 'intermediate'")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/enc/issuers/\(active)/key.pem"), "no key file beside the database")
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/enc/issuers/\(active)/certificate.pem"), "a copy for operators")

        let refused = try vouch("ca", "intermediate", "rotate", "--dir", root + "/plain", "--database", TestPostgres.url(of: plain))
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.stderr, "vouch: the new intermediate's key would go into the database unencrypted (this CA has no passphrase): "
            + "pass --key-in-directory and copy \(root)/plain/issuers/<serial>/key.pem into every replica's CA directory\n")
        XCTAssertEqual(try TestPostgres.shared.psql(plain, "SELECT count(*) FROM issuer"), "2", "refused before anything was made")
        let inDirectory = try vouch("ca", "intermediate", "rotate", "--dir", root + "/plain", "--database", TestPostgres.url(of: plain),
                                    "--key-in-directory")
        XCTAssertEqual(inDirectory.status, 0, inDirectory.stderr)
        let serial = try TestPostgres.shared.psql(plain, "SELECT serial FROM issuer WHERE state = 'active' AND kind = 'intermediate'")
        XCTAssertTrue(inDirectory.stdout.contains("key: \(root)/plain/issuers/\(serial)/key.pem (copy it into every replica's CA directory)"),
                      inDirectory.stdout)
        XCTAssertEqual(try TestPostgres.shared.psql(plain, "SELECT key_ref FROM issuer WHERE serial = '\(serial)'"), "file:issuers/\(serial)/key.pem")

        let foreign = try vouch("ca", "root", "status", "--dir", root + "/plain", "--database", TestPostgres.url(of: encrypted))
        XCTAssertEqual(foreign.stderr, "vouch: \(root)/plain/root.pem is not a root of this database: the directory and the database belong to different CAs\n")
    }

    /// The fenced `sh` blocks of docs/operations.md's "Rotating the intermediate" and "Rotating the
    /// root" run as written (with no agent, every gate is open at once), so they cannot drift from the CLI.
    func testTheDocumentedProceduresRunAsWritten() throws {
        let ca = try CAFixture()
        let text = try OperationsGuide.text()
        for section in [OperationsGuide.rotateIntermediate, OperationsGuide.rotateRoot] {
            let ran = try sh(try OperationsGuide.script(section, caDirectory: ca.caDir, text: text))
            XCTAssertEqual(ran.status, 0, "\(section): \(ran.stdout)\(ran.stderr)")
        }
        let status = try json(try vouch("ca", "root", "status", "--dir", ca.caDir, "--json").stdout)
        XCTAssertEqual(status["stage"] as? String, "none", "the rollover ran to its end")
        XCTAssertEqual((status["issuers"] as? [[String: Any]])?.filter { $0["state"] as? String == "retired" }.count, 4,
                       "the first root, its two intermediates (the first and the rotated one) and the cross certificate")
    }

    private func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
    }

    /// The key file is 0600 and the private half of the certificate file's first certificate.
    private func assertKey(_ keyPath: String, matches certificatePath: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let mode = try FileManager.default.attributesOfItem(atPath: keyPath)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600, keyPath, file: file, line: line)
        let key = try PrivateKey(pem: String(contentsOfFile: keyPath, encoding: .utf8))
        XCTAssertTrue(try X509Certificate(pem: String(contentsOfFile: certificatePath, encoding: .utf8)).matches(key), keyPath, file: file, line: line)
    }
}
