import Foundation
@testable import VouchAgent
import XCTest

/// Attacks on the late changes to the Workload API socket's directory.
final class LateFixAttackTests: XCTestCase {
    /// A socket directory whose parent another user can write (not sticky): while the agent creates
    /// the missing last component, that user swaps it for a symbolic link to a file of the agent's.
    /// The agent must never give that file the new directory's 0755.
    func testCreatingTheSocketDirectoryNeverChangesTheModeOfWhatASwappedInLinkNamesTo() throws {
        let parent = try shortSocketDirectory()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let secret = parent + "/key.pem"
        XCTAssertTrue(FileManager.default.createFile(atPath: secret, contents: Data("key".utf8), attributes: [.posixPermissions: 0o600]))
        let directory = parent + "/api"
        let link = parent + "/link"
        XCTAssertEqual(symlink(secret, link), 0)
        let swapping = Atomic(true)
        let attacker = Thread {
            while swapping.load() {
                // The moment the agent's directory exists, a link takes its place (one atomic exchange),
                // then the directory is removed for the agent to create it again.
                if exchange(link, directory) == 0 {
                    usleep(50)
                    exchange(link, directory)
                    rmdir(directory)
                }
            }
        }
        attacker.start()
        defer { swapping.store(false) }
        let deadline = Date().addingTimeInterval(1)  // the unfixed agent lost within 10 ms
        var info = stat()
        while Date() < deadline {
            _ = try? WorkloadAPISocketDirectory.prepare(directory + "/agent.sock")
            XCTAssertEqual(stat(secret, &info), 0)
            if info.st_mode & 0o777 != 0o600 { break }
        }
        XCTAssertEqual(String(info.st_mode & 0o777, radix: 8), "600", "the agent changed the mode of a file a link pointed to")
    }
}

/// renameat2(RENAME_EXCHANGE): swaps two paths in one step (Linux; looked up as Glibc's Swift module omits it).
private func exchange(_ a: String, _ b: String) -> Int32 {
    typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "renameat2") else { return -1 }
    return unsafeBitCast(symbol, to: RenameAt2.self)(AT_FDCWD, a, AT_FDCWD, b, 2)
}

private final class Atomic: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Bool
    init(_ value: Bool) { self.value = value }
    func load() -> Bool { lock.withLock { value } }
    func store(_ new: Bool) { lock.withLock { value = new } }
}
