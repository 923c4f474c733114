import Foundation
@testable import VouchAgent
import XCTest

/// The agent's `--exec` hook runner in process, with a timeout of half a second: a hanging hook
/// is killed with its process group once the timeout has passed, rotations meanwhile queue only
/// the latest certificate's hooks, and stopping kills the running hook and starts no more. The
/// agent running it beside rotation and shutdown is shown end to end in RotationHookTests.
final class RotationHooksTests: XCTestCase {
    func testAHangingHookIsKilledAfterTheTimeoutAndOnlyTheLatestQueuedRotationRunsNext() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = CollectedLog()
        // Each hook records its process group (the shell's pid) under its serial, then hangs.
        let hooks = RotationHooks(command: "echo $$ > \(directory)/$VOUCH_SERIAL; sleep 300", signal: nil, pidFile: nil,
                                  timeout: .milliseconds(500), logger: log.logger)
        defer { hooks.stop() }
        func group(_ serial: String) -> Int32? {
            (try? String(contentsOfFile: directory + "/" + serial, encoding: .utf8))
                .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }

        let started = Date()
        hooks.run(serial: "01", directory: directory)
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.2, "run returns at once")
        XCTAssertTrue(eventually { group("01") != nil })
        let first = try XCTUnwrap(group("01"))
        hooks.run(serial: "02", directory: directory)
        hooks.run(serial: "03", directory: directory)
        XCTAssertEqual(log.lines.filter { $0.contains("rotation hook still running") }.count, 2, "\(log.lines)")

        XCTAssertTrue(eventually { log.lines.contains { $0.contains("exec hook timed out; killed its process group") } }, "\(log.lines)")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.5, "not before the timeout")
        XCTAssertTrue(eventually { !processGroupIsAlive(first) }, "the hook's shell and its sleep are killed")
        XCTAssertTrue(eventually { group("03") != nil }, "the latest queued rotation's hook runs next")
        XCTAssertNil(group("02"), "a rotation superseded while queued runs no hook")
    }

    func testStoppingKillsTheRunningHookAndStartsNoMore() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = CollectedLog()
        let hooks = RotationHooks(command: "echo $$ > \(directory)/$VOUCH_SERIAL; sleep 300", signal: nil, pidFile: nil,
                                  timeout: .seconds(30), logger: log.logger)
        func group(_ serial: String) -> Int32? {
            (try? String(contentsOfFile: directory + "/" + serial, encoding: .utf8))
                .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        hooks.run(serial: "01", directory: directory)
        XCTAssertTrue(eventually { group("01") != nil })
        let running = try XCTUnwrap(group("01"))
        hooks.run(serial: "02", directory: directory)

        hooks.stop()
        XCTAssertTrue(eventually(timeout: 1) { !processGroupIsAlive(running) }, "stopping kills the running hook's process group")
        XCTAssertTrue(log.lines.contains { $0.contains("shutting down: killed the running exec hook") }, "\(log.lines)")
        hooks.run(serial: "03", directory: directory)
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertNil(group("02"), "the queued hook does not start after stop")
        XCTAssertNil(group("03"), "no hook starts after stop")
    }
}
