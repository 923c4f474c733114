import Foundation
@testable import VouchAgent
import XCTest

/// The Workload API socket's directory: one that another user could bind the socket's path in
/// while the agent is down is refused; a missing last component is created for the agent.
final class WorkloadAPISocketDirectoryTests: XCTestCase {
    private var directory = ""
    private var socket: String { directory + "/agent.sock" }

    override func setUpWithError() throws { directory = try shortSocketDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    private func refusal(_ socket: String, agentUID: uid_t = geteuid()) -> String? {
        do {
            _ = try WorkloadAPISocketDirectory.prepare(socket, agentUID: agentUID)
            return nil
        } catch {
            return "\(error)"
        }
    }

    func testADirectoryOthersOrItsGroupCanWriteIsRefused() throws {
        XCTAssertNil(refusal(socket), "mkdtemp's 0700, the agent's own")
        let others = "cannot serve the Workload API on \(socket): \(directory) is writable by other users, who could serve workloads "
            + "a forged identity there while the agent is down; use a directory only the agent's user can write, e.g. /run/vouch"
        for mode: mode_t in [0o777, 0o1777, 0o703] {
            chmod(directory, mode)
            XCTAssertEqual(refusal(socket), others, String(mode, radix: 8))
        }
        chmod(directory, 0o770)
        var info = stat()
        XCTAssertEqual(lstat(directory, &info), 0)
        XCTAssertEqual(refusal(socket), "cannot serve the Workload API on \(socket): \(directory) is writable by its group (gid \(info.st_gid)), "
            + "whose members could serve workloads a forged identity there while the agent is down; "
            + "use a directory only the agent's user can write, e.g. /run/vouch")
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket))
    }

    func testADirectoryOwnedByAnotherUserIsRefusedAndRootsOrTheAgentsOwnIsServed() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root to give the directory away")
        chmod(directory, 0o755)
        XCTAssertNil(refusal(socket, agentUID: 1000), "owned by root")
        XCTAssertEqual(chown(directory, 65534, 65534), 0)
        XCTAssertEqual(refusal(socket), "cannot serve the Workload API on \(socket): \(directory) is owned by uid 65534, who could serve "
            + "workloads a forged identity there while the agent is down; use a directory only the agent's user can write, e.g. /run/vouch")
        XCTAssertNil(refusal(socket, agentUID: 65534), "owned by the agent's user")
    }

    func testASymbolicLinkAsTheDirectoryIsRefusedNamingItsTarget() throws {
        let real = directory + "/real", link = directory + "/link"
        XCTAssertEqual(mkdir(real, 0o700), 0)
        XCTAssertEqual(symlink(real, link), 0)
        XCTAssertEqual(refusal(link + "/agent.sock"), "cannot serve the Workload API on \(link)/agent.sock: \(link) is a symbolic link, "
            + "and the agent checks the owner and mode of a real directory only; name the directory it points to (\(real)) instead")
        XCTAssertNil(refusal(real + "/agent.sock"))
    }

    func testAMissingLastComponentIsCreatedWithMode0755AndAMissingParentIsRefused() throws {
        let api = directory + "/api"
        let previous = umask(0o077)
        defer { umask(previous) }
        XCTAssertEqual(try WorkloadAPISocketDirectory.prepare(api + "/agent.sock"), api)
        var info = stat()
        XCTAssertEqual(lstat(api, &info), 0)
        XCTAssertEqual(info.st_mode & 0o7777, 0o755, "not cut by the agent's umask 077")
        XCTAssertEqual(info.st_uid, geteuid())
        XCTAssertNil(try WorkloadAPISocketDirectory.prepare(api + "/agent.sock"), "there the second time")
        XCTAssertEqual(refusal(directory + "/a/b/agent.sock"),
                       "cannot serve the Workload API on \(directory)/a/b/agent.sock: no directory \(directory)/a to create \(directory)/a/b in")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/a"))
    }
}
