import Foundation
import XCTest

/// `--exec` hooks run beside rotation, never in its way: a hanging one is killed with its whole
/// process group after `--hook-timeout`, and it never holds up shutdown. `--signal` checks the
/// pid file and its process before signalling anything.
final class RotationHookTests: XCTestCase {
    func testAHangingHookIsKilledAfterTheTimeoutAndNeitherBlocksRotationNorShutdown() throws {
        let ca = try CAFixture()
        // The hook records its process group (the shell's pid) per serial, then hangs.
        let groups = ca.root + "/groups"
        try FileManager.default.createDirectory(atPath: groups, withIntermediateDirectories: true)
        // A 5 s certificate renewed at 0.2 of its life rotates about every 0.6 s (the CA backdates
        // a tenth of the lifetime), so several rotations fall within the 2 s hook timeout.
        let (agent, _) = try ca.startAgent(ttl: "5s", extra: [
            "--renew-fraction", "0.2", "--exec", "echo $$ > \(groups)/$VOUCH_SERIAL; sleep 300", "--hook-timeout", "2s"])
        func hookGroups() -> [Int32] {
            ((try? FileManager.default.contentsOfDirectory(atPath: groups)) ?? []).sorted().compactMap {
                Int32((try? String(contentsOfFile: groups + "/" + $0, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "")
            }
        }
        func rotations() -> Int { agent.log.components(separatedBy: "] rotated").count - 1 }

        // The first hooks (for the first CRL and rotation, gathered within the 1 s debounce) hang.
        XCTAssertTrue(eventually(timeout: 5) { hookGroups().count == 1 }, agent.log)
        let first = hookGroups()[0]
        // The next rotation is not held up by it; its hooks wait for the first.
        XCTAssertTrue(eventually(timeout: 5) { rotations() >= 2 }, agent.log)
        XCTAssertTrue(eventually { agent.log.contains("hook still running") }, agent.log)
        // At 2 s the first hook is killed with its process group, and only then does the queued one
        // start: a second hook seen (read before the log) while no timeout is logged ran beside the first.
        var startedBeside = false
        XCTAssertTrue(eventually(timeout: 4) {
            let started = hookGroups().count
            let timedOut = agent.log.contains("exec hook timed out")
            if started > 1, !timedOut { startedBeside = true }
            return timedOut
        }, agent.log)
        XCTAssertFalse(startedBeside, "not started twice: \(agent.log)")
        XCTAssertTrue(eventually { !processGroupIsAlive(first) }, "the hook's shell and its sleep are killed")
        XCTAssertTrue(eventually { hookGroups().count == 2 }, agent.log)
        let second = hookGroups().first { $0 != first } ?? 0
        XCTAssertTrue(processGroupIsAlive(second))

        // SIGTERM while that hook runs: the agent stops at once and takes the hook with it.
        let stopping = Date()
        XCTAssertEqual(agent.stop(), 0, agent.log)
        XCTAssertLessThan(Date().timeIntervalSince(stopping), 2.5, "shutdown did not wait for the hook")
        XCTAssertTrue(eventually(timeout: 1) { !processGroupIsAlive(second) }, "the running hook's process group is killed at shutdown")
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

        // Each refusal reason is checked in process (PidFileTargetTests); here one agent shows the
        // check guards the real signal hook. A 5 s certificate renewed at 0.2 of its life rotates
        // about 0.6 s after enrollment.
        let token = ca.root + "/token-pid"
        try ca.createToken(spiffeID: "spiffe://example.org/svc/pid").write(toFile: token, atomically: true, encoding: .utf8)
        let agent = try AgentProcess(arguments: ca.agentArguments(out: ca.root + "/agent-pid", ttl: "5s")
            + ["--renew-fraction", "0.2", "--token-file", token, "--signal", "TERM", "--pid-file", target,
               "--signal-process-name", "nginx"])
        defer { agent.stop() }
        XCTAssertTrue(eventually(timeout: 5) { agent.log.contains("signal hook refused") }, agent.log)
        XCTAssertTrue(agent.log.contains("is sleep, not nginx"), agent.log)
        XCTAssertTrue(bystander.isRunning, "the unrelated sleep was not signalled")
    }
}

/// True while a process of process group `group` runs (zombies waiting to be reaped do not count).
func processGroupIsAlive(_ group: Int32) -> Bool {
    let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return pids.contains { pid in
        guard Int32(pid) != nil, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let end = stat.lastIndex(of: ")") else { return false }
        let fields = stat[stat.index(after: end)...].split(separator: " ")   // state, ppid, pgrp, ...
        return fields.count > 2 && fields[0] != "Z" && Int32(fields[2]) == group
    }
}
