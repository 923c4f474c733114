import Foundation
import XCTest

/// Files the issuer commands and `ca admin-cert` read (`--root-key`, `--passphrase-file`, an
/// admin.pem already in `--out`) are regular files of a few KiB: a FIFO, a device or a huge file
/// is refused in one line at once, never read until the command hangs or runs out of memory.
final class IssuerFileInputTests: XCTestCase {
    func testAFIFOADeviceOrAHugeFileIsRefusedInOneLineAtOnce() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = root + "/ca", fifo = root + "/fifo", huge = root + "/huge.pem"
        XCTAssertEqual(try vouch("ca", "init", "--dir", dir, "--trust-domain", "example.org").status, 0)
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertTrue(FileManager.default.createFile(atPath: huge, contents: Data(repeating: 0x41, count: 65537)))

        let cases: [(arguments: [String], refusal: String)] = [
            (["ca", "intermediate", "rotate", "--dir", dir, "--root-key", fifo], "--root-key \(fifo) is not a regular file"),
            (["ca", "root", "prepare", "--dir", dir, "--root-key", "/dev/zero"], "--root-key /dev/zero is not a regular file"),
            (["ca", "intermediate", "rotate", "--dir", dir, "--root-key", huge], "--root-key \(huge) is larger than 65536 bytes"),
            (["ca", "root", "status", "--dir", dir, "--passphrase-file", fifo], "passphrase file \(fifo) is not a regular file"),
            (["ca", "admin-cert", "--dir", dir, "--spiffe-id", "spiffe://example.org/vouch/admin", "--out", dir,
              "--passphrase-file", "/dev/zero"], "passphrase file /dev/zero is not a regular file"),
        ]
        for (arguments, refusal) in cases {
            let started = Date()
            let result = try execute(VouchBinary.path, arguments)
            XCTAssertLessThan(Date().timeIntervalSince(started), 5, "\(arguments) answered at once")
            XCTAssertEqual(result.status, 1, arguments.joined(separator: " "))
            XCTAssertEqual(result.stderr, "vouch: \(refusal)\n", arguments.joined(separator: " "))
        }

        // An admin.pem in --out that is a FIFO is neither read nor replaced.
        let out = root + "/admin"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        XCTAssertEqual(mkfifo(out + "/admin.pem", 0o600), 0)
        let admin = try vouch("ca", "admin-cert", "--dir", dir, "--spiffe-id", "spiffe://example.org/ops/alice", "--out", out)
        XCTAssertEqual(admin.stderr, "vouch: --out file \(out)/admin.pem is not a regular file\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/admin_key.pem"))
    }
}
