import Foundation
import Testing
import VouchAuthority

/// `KeyFile.read`: a key file named by a database row is read inside the CA directory only, as a
/// small regular file, never through a link; nothing makes it block or fill the memory.
@Suite("Key files named by the database")
struct KeyFileTests {
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-keyfile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("issuers/0a"), withIntermediateDirectories: true)
        try "-----BEGIN PRIVATE KEY-----\n".write(to: directory.appendingPathComponent("issuers/0a/key.pem"), atomically: true, encoding: .utf8)
        try "root key".write(to: directory.appendingPathComponent("root_key.pem"), atomically: true, encoding: .utf8)
    }

    func refusal(_ relative: String) -> String? {
        do {
            _ = try KeyFile.read(relative, in: directory)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func aKeyFileInsideTheDirectoryIsRead() throws {
        #expect(try KeyFile.read("issuers/0a/key.pem", in: directory) == "-----BEGIN PRIVATE KEY-----\n")
    }

    @Test(arguments: ["../root_key.pem", "issuers/../root_key.pem", "/etc/passwd", "issuers//key.pem", "./root_key.pem", ""])
    func aPathThatIsNotPlainIsRefused(relative: String) {
        #expect(refusal(relative) == "\(relative) is not a plain path inside the CA directory")
    }

    @Test func aSymbolicLinkAnywhereOnTheWayIsNotFollowed() throws {
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-keyfile-outside-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outside.appendingPathComponent("x"), withIntermediateDirectories: true)
        try "secret".write(to: outside.appendingPathComponent("x/key.pem"), atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("issuers/0b"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent("issuers/0b/key.pem").path,
                                                   withDestinationPath: outside.appendingPathComponent("x/key.pem").path)
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent("issuers/0c").path, withDestinationPath: outside.appendingPathComponent("x").path)
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent("issuers/0d").path, withDestinationPath: "/dev")
        for relative in ["issuers/0b/key.pem", "issuers/0c/key.pem", "issuers/0d/zero"] {
            #expect(refusal(relative)?.hasSuffix("a symbolic link or not a directory on the way") == true, "\(relative)")
        }
    }

    @Test func aFIFOIsRefusedAtOnce() throws {
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("issuers/0e"), withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("issuers/0e/key.pem").path
        #expect(mkfifo(path, 0o600) == 0)
        let started = Date()
        #expect(refusal("issuers/0e/key.pem") == "\(path) is not a regular file")
        #expect(Date().timeIntervalSince(started) < 1)
    }

    @Test func aHugeFileIsRefusedWithoutReadingIt() throws {
        let path = directory.appendingPathComponent("issuers/0a/key.pem").path
        #expect(truncate(path, 1 << 30) == 0)  // sparse: 1 GiB that takes no disk
        #expect(refusal("issuers/0a/key.pem") == "\(path) is larger than \(KeyFile.limit) bytes")
    }
}
