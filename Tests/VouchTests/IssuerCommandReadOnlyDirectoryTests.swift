import Foundation
import XCTest

/// On a read-only CA directory (SQLite in it) every issuer command refuses in one line naming the
/// directory, before opening the database, and writes nothing.
final class IssuerCommandReadOnlyDirectoryTests: XCTestCase {
    func testEveryIssuerCommandRefusesAReadOnlyDirectoryInOneLine() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-readonly-\(UUID().uuidString)").path
        let dir = root + "/ca"
        XCTAssertEqual(try vouch("ca", "init", "--dir", dir, "--trust-domain", "example.org").status, 0)
        XCTAssertEqual(try vouch("ca", "root", "status", "--dir", dir).status, 0)  // adopts the pair
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: root)
        // Root writes through permissions: the commands then run as nobody, owning the directory.
        var prefix: [String] = []
        if geteuid() == 0 {
            XCTAssertEqual(try execute("/bin/chown", ["-R", "65534:65534", dir]).status, 0)
            prefix = ["--reuid=65534", "--regid=65534", "--clear-groups", VouchBinary.path]
        }
        XCTAssertEqual(try execute("/bin/chmod", ["u-w", dir, dir + "/vouch.db"]).status, 0)
        let before = try Self.listing(dir)
        for command in [["intermediate", "rotate"], ["root", "prepare"], ["root", "status"], ["root", "activate", "--force"],
                        ["root", "retire", "--force"], ["admin-cert", "--spiffe-id", "spiffe://example.org/ops/alice", "--out", root]] {
            let arguments = ["ca"] + command + ["--dir", dir]
            let run = prefix.isEmpty ? try execute(VouchBinary.path, arguments) : try execute("/usr/bin/setpriv", prefix + arguments)
            XCTAssertEqual(run.status, 1, "\(command): \(run.stdout)")
            XCTAssertEqual(run.stderr, "vouch: \(dir) is read-only: the issuer commands write \(dir)/vouch.db (run them where the CA "
                           + "directory is writable, or against the PostgreSQL database with --database)\n", "\(command)")
        }
        XCTAssertEqual(try Self.listing(dir), before, "nothing written")
    }

    /// Names, sizes and modification times of the directory's files.
    static func listing(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).sorted().map { name in
            let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/" + name)
            return "\(name) \(attributes[.size]!) \((attributes[.modificationDate] as! Date).timeIntervalSince1970)"
        }
    }
}
