import Foundation
import XCTest

/// Operator files read at start (`--config`, the CA directory's ca.json) are read as regular files
/// within a size limit: a FIFO or /dev/zero in their place is refused at once in one line instead
/// of hanging the command or filling its memory.
final class OperatorFileBoundsTests: XCTestCase {
    func testAConfigFileThatIsAFIFOOrDevZeroIsRefusedAtOnce() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fifo = root + "/vouch.yaml"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        for path in [fifo, "/dev/zero"] {
            let started = Date()
            let result = try vouch("server", "--dir", root + "/ca", "--config", path)
            XCTAssertEqual(result.status, 1)
            XCTAssertEqual(result.stderr, "vouch: config file \(path) is not a regular file\n")
            XCTAssertLessThan(Date().timeIntervalSince(started), 5, path)
        }
    }

    func testACADirectoryWhoseSettingsAreAFIFOIsRefusedAtOnce() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = root + "/ca"
        XCTAssertEqual(try vouch("ca", "init", "--dir", dir, "--trust-domain", "example.org").status, 0)
        try FileManager.default.removeItem(atPath: dir + "/ca.json")
        XCTAssertEqual(mkfifo(dir + "/ca.json", 0o600), 0)
        for command in [["server", "--dir", dir], ["ca", "root", "status", "--dir", dir]] {
            let result = try execute(VouchBinary.path, command)
            XCTAssertEqual(result.status, 1, command.joined(separator: " "))
            XCTAssertEqual(result.stderr, "vouch: \(dir)/ca.json is not a regular file\n", command.joined(separator: " "))
        }
    }
}
