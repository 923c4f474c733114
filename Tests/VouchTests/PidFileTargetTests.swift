import Foundation
@testable import VouchAgent
import XCTest

/// What `--signal` accepts as its target, in process: the pid file and its process must be what
/// the operator configured, else nothing is signalled and the reason is given. The agent's use
/// of this check is shown end to end in RotationHookTests.
final class PidFileTargetTests: XCTestCase {
    var directory = ""
    var bystander = Process()

    override func setUpWithError() throws {
        directory = try temporaryDirectory()
        bystander = Process()
        bystander.executableURL = URL(fileURLWithPath: "/bin/sleep")
        bystander.arguments = ["300"]
        try bystander.run()
    }

    override func tearDown() {
        bystander.terminate()
        bystander.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func pidFile(_ name: String, _ contents: String, mode: Int = 0o644) throws -> String {
        let path = directory + "/" + name
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        return path
    }

    func assertRefused(_ path: String, name: String? = nil, _ reason: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try PidFileTarget(path: path, expectedName: name), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(reason), "\(error)", file: file, line: line)
        }
    }

    func testTheConfiguredProcessIsAccepted() throws {
        let pid = bystander.processIdentifier
        let path = try pidFile("target.pid", "\(pid)\n")
        XCTAssertEqual(try PidFileTarget(path: path, expectedName: nil).pid, pid)
        XCTAssertEqual(try PidFileTarget(path: path, expectedName: "sleep").pid, pid)
    }

    func testAnythingButTheConfiguredProcessIsRefusedWithTheReason() throws {
        let pid = bystander.processIdentifier
        let target = try pidFile("target.pid", "\(pid)\n")
        let symlink = directory + "/symlink.pid"
        try FileManager.default.createSymbolicLink(atPath: symlink, withDestinationPath: target)
        let fifo = directory + "/fifo.pid"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)

        assertRefused(symlink, "is a symbolic link")
        assertRefused(fifo, "is not a regular file")
        assertRefused(try pidFile("garbage.pid", "\(pid) 1\n"), "does not hold just a positive integer")
        assertRefused(try pidFile("open.pid", "\(pid)\n", mode: 0o666), "is writable by every user")
        assertRefused(try pidFile("long.pid", String(repeating: "1", count: 40)), "holds more than a pid")
        assertRefused(target, name: "nginx", "is sleep, not nginx")
        assertRefused(directory + "/missing.pid", "cannot open")
        // A pid no process has (the bystander's, once it has been reaped).
        bystander.terminate()
        bystander.waitUntilExit()
        assertRefused(target, "no process \(pid)")
    }

    func testOnlyDigitsWithoutALeadingZeroAndAtMostOneNewlineAreAPid() {
        func parse(_ text: String) -> pid_t? { PidFileTarget.parse(Array(text.utf8)) }
        XCTAssertEqual(parse("42"), 42)
        XCTAssertEqual(parse("42\n"), 42)
        for text in ["", "\n", "0", "042", "-42", "+42", " 42", "42 ", "42\n\n", "4 2", "99999999999", "4294967338"] {
            XCTAssertNil(parse(text), text)
        }
    }
}
