import Foundation
import VouchAuthority
import VouchCrypto
import VouchSQLiteStore
import XCTest

/// `vouch ca intermediate rotate` given what it must refuse (a --root-key that is no private key,
/// or another root's, or the intermediate's) or run twice at once: each refusal is one line, and
/// leaves no file under DIR/issuers/ and no issuer row; of concurrent runs one wins per generation
/// and the others leave nothing behind.
final class IssuerCommandHostileInputTests: XCTestCase {
    func initCA(_ name: String = "ca", passphrase: String? = nil) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-hostile-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var arguments = ["ca", "init", "--dir", root + "/" + name, "--trust-domain", "example.org"]
        if let passphrase {
            try passphrase.write(toFile: root + "/passphrase", atomically: true, encoding: .utf8)
            arguments += ["--passphrase-file", root + "/passphrase"]
        }
        let made = try execute(VouchBinary.path, arguments)
        XCTAssertEqual(made.status, 0, made.stderr)
        return root + "/" + name
    }

    func issuerRows(_ dir: String) async throws -> (generation: Int64, count: Int) {
        let snapshot = try await SQLiteAuthorityStore(path: dir + "/vouch.db").issuers()
        return (snapshot.generation, snapshot.issuers.count)
    }

    func testRootKeysThatAreNotTheActiveRootsPrivateKeyAreRefusedAndLeaveNothing() async throws {
        let dir = try initCA()
        let other = try initCA("other")
        let publicKey = dir + "/../root_public.pem"
        XCTAssertEqual(try openssl(["pkey", "-in", dir + "/root_key.pem", "-pubout", "-out", publicKey]).status, 0)
        let before = try await issuerRows(dir)  // adopts the pair: generation 1, two rows
        let rootSerial = try X509Certificate(pem: String(contentsOfFile: dir + "/root.pem", encoding: .utf8)).serialHex
        let cases: [(String, String)] = [
            (dir + "/root.pem", "not a PEM private key"),
            (publicKey, "not a PEM private key"),
            (other + "/root_key.pem", "is not the key of the active root \(rootSerial)"),
            (dir + "/intermediate_key.pem", "is not the key of the active root \(rootSerial)"),
            ("/dev/zero", "--root-key /dev/zero is not a regular file"),
        ]
        for (key, refusal) in cases {
            let run = try vouch("ca", "intermediate", "rotate", "--dir", dir, "--root-key", key)
            XCTAssertEqual(run.status, 1, key)
            XCTAssertTrue(run.stderr.hasPrefix("vouch: ") && run.stderr.contains(refusal), "\(key): \(run.stderr)")
            XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/issuers"), "\(key): files written")
            let after = try await issuerRows(dir)
            XCTAssertTrue(after == before, "\(key): rows written")
        }
    }

    func testConcurrentRotationsLeaveOneKeyPerRecordedIssuerAndPrivateModes() async throws {
        let dir = try initCA()
        let runs = try await withThrowingTaskGroup(of: CommandResult.self) { group in
            for _ in 0..<3 { group.addTask { try vouch("ca", "intermediate", "rotate", "--dir", dir) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        XCTAssertGreaterThanOrEqual(runs.filter { $0.status == 0 }.count, 1)
        for refused in runs where refused.status != 0 {
            XCTAssertEqual(refused.stderr, "vouch: the issuers changed meanwhile; run status again\n")
        }
        let snapshot = try await SQLiteAuthorityStore(path: dir + "/vouch.db").issuers()
        let recorded = Set(snapshot.issuers.filter { $0.keyRef.hasPrefix("file:") }.map(\.serial))
        XCTAssertEqual(recorded.count, runs.filter { $0.status == 0 }.count)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir + "/issuers")), recorded, "no orphan from a refused run")
        func mode(_ path: String) throws -> Int { (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1 }
        XCTAssertEqual(try mode(dir + "/issuers"), 0o700)
        for serial in recorded {
            XCTAssertEqual(try mode(dir + "/issuers/\(serial)"), 0o700)
            XCTAssertEqual(try mode(dir + "/issuers/\(serial)/key.pem"), 0o600)
        }
    }

    /// What the commands write at each stage passes the check a server applies before using it
    /// (`IssuerSnapshot.checkConsistency`): a false refusal would stop every replica from following.
    func testEveryStageTheCommandsWriteIsConsistent() async throws {
        let dir = try initCA()
        let anchor = try X509Certificate(pem: String(contentsOfFile: dir + "/root.pem", encoding: .utf8))
        for stage in [["intermediate", "rotate"], ["root", "prepare"], ["root", "activate", "--force"], ["root", "retire", "--force"],
                      ["intermediate", "rotate"]] {
            let run = try execute(VouchBinary.path, ["ca"] + stage + ["--dir", dir])
            XCTAssertEqual(run.status, 0, "\(stage): \(run.stderr)")
            let snapshot = try await SQLiteAuthorityStore(path: dir + "/vouch.db").issuers()
            XCTAssertNoThrow(try snapshot.checkConsistency(anchorRoot: anchor, signingAt: Date()), "\(stage)")
        }
    }
}
