import Foundation
import XCTest

/// `--exec` hooks run beside rotation, never in its way: a hanging one is killed with its whole
/// process group after `--hook-timeout`, and it never holds up shutdown. `--signal` checks the
/// pid file and its process before signalling anything.
final class RotationHookTests: XCTestCase {
    /// True while a process of process group `group` runs (zombies waiting to be reaped do not count).
    func groupIsAlive(_ group: Int32) -> Bool {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return pids.contains { pid in
            guard Int32(pid) != nil, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let end = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: end)...].split(separator: " ")   // state, ppid, pgrp, ...
            return fields.count > 2 && fields[0] != "Z" && Int32(fields[2]) == group
        }
    }

    func testAHangingHookIsKilledAfterTheTimeoutAndNeitherBlocksRotationNorShutdown() throws {
        let ca = try CAFixture()
        // The hook records its process group (the shell's pid) per serial, then hangs.
        let groups = ca.root + "/groups"
        try FileManager.default.createDirectory(atPath: groups, withIntermediateDirectories: true)
        let (agent, _) = try ca.startAgent(ttl: "6s", extra: [
            "--exec", "echo $$ > \(groups)/$VOUCH_SERIAL; sleep 300", "--hook-timeout", "5s"])
        func hookGroups() -> [Int32] {
            ((try? FileManager.default.contentsOfDirectory(atPath: groups)) ?? []).sorted().compactMap {
                Int32((try? String(contentsOfFile: groups + "/" + $0, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "")
            }
        }
        func rotations() -> Int { agent.log.components(separatedBy: "] rotated").count - 1 }

        // First rotation (about 4 s in): its hook hangs.
        XCTAssertTrue(eventually(timeout: 10) { hookGroups().count == 1 }, agent.log)
        let first = hookGroups()[0]
        // The second rotation (about 4 s later) is not held up by it; its hooks wait for the first.
        XCTAssertTrue(eventually(timeout: 6) { rotations() == 2 }, agent.log)
        XCTAssertTrue(eventually { agent.log.contains("rotation hook still running") }, agent.log)
        XCTAssertEqual(hookGroups(), [first], "not started twice")
        // At 5 s the first hook is killed with its process group, and the queued one starts.
        XCTAssertTrue(eventually(timeout: 3) { agent.log.contains("exec hook timed out") }, agent.log)
        XCTAssertTrue(eventually { !self.groupIsAlive(first) }, "the hook's shell and its sleep are killed")
        XCTAssertTrue(eventually { hookGroups().count == 2 }, agent.log)
        let second = hookGroups().first { $0 != first } ?? 0
        XCTAssertTrue(groupIsAlive(second))

        // SIGTERM while that hook runs: the agent stops at once and takes the hook with it.
        let stopping = Date()
        XCTAssertEqual(agent.stop(), 0, agent.log)
        XCTAssertLessThan(Date().timeIntervalSince(stopping), 2.5, "shutdown did not wait for the hook")
        XCTAssertTrue(eventually(timeout: 1) { !self.groupIsAlive(second) }, "the running hook's process group is killed at shutdown")
        XCTAssertTrue(agent.log.contains("killed the running exec hook"), agent.log)
    }

    func testThePidFileIsRefusedUnlessItAndItsProcessAreWhatWasConfigured() throws {
        let ca = try CAFixture()
        // An unrelated process that must survive every case.
        let bystander = Process()
        bystander.executableURL = URL(fileURLWithPath: "/bin/sleep")
        bystander.arguments = ["300"]
        try bystander.run()
        defer { bystander.terminate() }
        let pid = bystander.processIdentifier
        let target = ca.root + "/target.pid"
        try "\(pid)\n".write(toFile: target, atomically: true, encoding: .utf8)

        let symlink = ca.root + "/symlink.pid"
        try FileManager.default.createSymbolicLink(atPath: symlink, withDestinationPath: target)
        let fifo = ca.root + "/fifo.pid"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let garbage = ca.root + "/garbage.pid"
        try "\(pid) 1\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        let cases: [(pidFile: String, extra: [String], reason: String)] = [
            (symlink, [], "is a symbolic link"),
            (fifo, [], "is not a regular file"),
            (garbage, [], "does not hold just a positive integer"),
            (target, ["--signal-process-name", "nginx"], "is sleep, not nginx"),
        ]
        // One agent per case, side by side: each refuses at its first rotation.
        var agents: [AgentProcess] = []
        for (index, test) in cases.enumerated() {
            let token = ca.root + "/token-\(index)"
            try ca.createToken(spiffeID: "spiffe://example.org/svc/pid\(index)").write(toFile: token, atomically: true, encoding: .utf8)
            agents.append(try AgentProcess(arguments: ca.agentArguments(out: ca.root + "/agent-\(index)", ttl: "6s")
                + ["--token-file", token, "--signal", "TERM", "--pid-file", test.pidFile] + test.extra))
        }
        defer { agents.forEach { $0.stop() } }
        for (agent, test) in zip(agents, cases) {
            XCTAssertTrue(eventually(timeout: 10) { agent.log.contains("signal hook refused") }, agent.log)
            XCTAssertTrue(agent.log.contains(test.reason), "\(test.reason): \(agent.log)")
        }
        XCTAssertTrue(bystander.isRunning, "the unrelated sleep was not signalled")
    }
}
