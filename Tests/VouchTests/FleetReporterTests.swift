import Foundation
import GRPCCore
import Synchronization
import Testing
import VouchAPI
@testable import VouchAgent

/// The agent's fleet reports, in process on a hand-moved clock: what a report says, when reports
/// go (start, rotation, bundle change, renewal error, heartbeat) and that a CA that fails or is
/// too old to take them costs a log line, not the agent.
@Suite("Agent fleet reports")
struct FleetReporterTests {
    @Test func theStartReportSaysWhatTheListenerServesAndWhichBundleIsHeld() async throws {
        let world = ReporterWorld()
        world.state.update {
            $0.serial = "0b"
            $0.servingSerial = "0a"
            $0.servingNotAfter = Date(timeIntervalSince1970: 2_000_000_000)
            $0.trustGeneration = 3
            $0.bundleSHA256 = Array(repeating: 7, count: 32)
            $0.rootSerials = ["01", "02"]
            $0.failures = 2
        }
        let running = world.start()
        defer { running.cancel() }
        let start = world.clock.now
        try await world.waitForDeadlines([start.addingTimeInterval(1)])
        world.clock.advance(by: 1)
        let report = try await world.report(1)
        #expect(report.servingSerial == "0a", "the served certificate, not the one just written")
        #expect(report.servingNotAfter == 2_000_000_000)
        #expect(report.trustGeneration == 3 && report.bundleSha256 == Data(repeating: 7, count: 32) && report.rootSerials == ["01", "02"])
        #expect(report.failures == 2 && report.rotations == 0 && report.lastRotation == 0 && report.lastError.isEmpty)
        #expect(report.agentVersion == VouchVersion.current)
        #expect(report.hostName == FleetReporter.localHostName() && !report.hostName.isEmpty)
        // Nothing more until the heartbeat.
        try await world.waitForDeadlines([start.addingTimeInterval(301)])
        #expect(world.source.calls == 1)
    }

    @Test func aRotationIsReportedWithTheNewSerialAndChangesCloseTogetherMakeOneReport() async throws {
        let world = ReporterWorld()
        world.serve("0a")
        let running = try await world.startAndTakeTheFirstReport()
        defer { running.cancel() }
        // The listener reloads the new certificate; the renewal loop records the rotation and the
        // trust follower re-applies the bundle for it, half a second apart.
        world.clock.advance(by: 10)
        world.serve("0c")
        world.state.update {
            $0.serial = "0c"
            $0.rotations = 1
            $0.lastRotation = world.clock.now
        }
        let rotatedAt = world.clock.now
        world.clock.advance(by: 0.5)
        world.state.update { $0.trustGeneration = 4 }
        try await world.waitForDeadlines([rotatedAt.addingTimeInterval(1)])
        world.clock.advance(by: 0.5)
        let report = try await world.report(2)
        #expect(report.servingSerial == "0c" && report.rotations == 1 && report.trustGeneration == 4)
        #expect(report.lastRotation == Int64(rotatedAt.timeIntervalSince1970))
        // The heartbeat counts from the last report.
        try await world.waitForDeadlines([world.clock.now.addingTimeInterval(300)])
        #expect(world.source.calls == 2)
    }

    @Test func aTrustBundleUpdateIsReportedAndOtherChangesAreNot() async throws {
        let world = ReporterWorld()
        world.serve("0a")
        let running = try await world.startAndTakeTheFirstReport()
        defer { running.cancel() }
        // Another replica answering, a new renewal time: nothing the CA judges.
        world.state.update {
            $0.caAddress = "127.0.0.1:2"
            $0.nextRenewal = world.clock.now.addingTimeInterval(600)
        }
        world.clock.advance(by: 5)
        try await world.waitForDeadlines([world.clock.now.addingTimeInterval(295)])
        #expect(world.source.calls == 1)
        // The trust follower applied a bundle with a second root.
        world.state.update {
            $0.trustGeneration = 5
            $0.bundleSHA256 = Array(repeating: 9, count: 32)
            $0.rootSerials = ["01", "03"]
        }
        try await world.waitForDeadlines([world.clock.now.addingTimeInterval(1)])
        world.clock.advance(by: 1)
        let report = try await world.report(2)
        #expect(report.trustGeneration == 5 && report.rootSerials == ["01", "03"] && report.bundleSha256 == Data(repeating: 9, count: 32))
    }

    @Test func heartbeatsComeEveryIntervalWithinTenPercent() async throws {
        for (random, interval) in [(1.0, 330.0), (-1.0, 270.0), (0.5, 315.0)] {
            let world = ReporterWorld(random: random)
            world.serve("0a")
            let running = try await world.startAndTakeTheFirstReport()
            defer { running.cancel() }
            for round in 2...3 {
                let beat = world.clock.now.addingTimeInterval(interval)
                try await world.waitForDeadlines([beat])
                world.clock.advance(to: beat.addingTimeInterval(-0.5))
                try await world.waitForDeadlines([beat])
                #expect(world.source.calls == round - 1, "not before the heartbeat")
                world.clock.advance(to: beat)
                #expect(try await world.report(round).servingSerial == "0a")
            }
        }
    }

    @Test func withoutHeartbeatsChangesAreStillReported() async throws {
        let world = ReporterWorld(heartbeat: 0)
        world.serve("0a")
        let running = try await world.startAndTakeTheFirstReport()
        defer { running.cancel() }
        try await world.waitForDeadlines([])
        world.clock.advance(by: 3600)
        try await Task.sleep(for: .milliseconds(50))
        #expect(world.source.calls == 1, "no heartbeat")
        world.serve("0b")
        try await world.waitForDeadlines([world.clock.now.addingTimeInterval(1)])
        world.clock.advance(by: 1)
        #expect(try await world.report(2).servingSerial == "0b")
    }

    @Test func renewalErrorsAreReportedAtMostOnceEvery30Seconds() async throws {
        let world = ReporterWorld()
        world.serve("0a")
        let running = try await world.startAndTakeTheFirstReport()
        defer { running.cancel() }
        func fail(_ message: String) {
            world.state.update {
                $0.failures += 1
                $0.lastError = message
                $0.lastErrorAt = world.clock.now
            }
        }
        fail("renewal failed: unavailable")
        let firstError = world.clock.now
        try await world.waitForDeadlines([firstError.addingTimeInterval(1)])
        world.clock.advance(by: 1)
        let first = try await world.report(2)
        #expect(first.lastError == "renewal failed: unavailable" && first.lastErrorAt == Int64(firstError.timeIntervalSince1970))

        // Three more failures within the next 30 s (backoff 2 s, 4 s, 8 s): one report, at 30 s, with the latest.
        for (wait, attempt) in [(2.0, 2), (4, 3), (8, 4)] {
            world.clock.advance(by: wait)
            fail("renewal failed: attempt \(attempt)")
            try await world.waitForDeadlines([firstError.addingTimeInterval(31)])
        }
        #expect(world.source.calls == 2)
        world.clock.advance(to: firstError.addingTimeInterval(31))
        let throttled = try await world.report(3)
        #expect(throttled.lastError == "renewal failed: attempt 4" && throttled.failures == 4)
        try await world.waitForDeadlines([world.clock.now.addingTimeInterval(300)])
        #expect(world.source.calls == 3)
    }

    @Test func aFailedReportIsLoggedAndTheAgentGoesOn() async throws {
        let world = ReporterWorld()
        world.source.answer(RPCError(code: .unavailable, message: "connection refused"))
        world.serve("0a")
        let running = world.start()
        defer { running.cancel() }
        try await world.waitForDeadlines([world.clock.now.addingTimeInterval(1)])
        world.clock.advance(by: 1)
        try await world.waitForCalls(1)
        try await world.waitForDeadlines([world.clock.now.addingTimeInterval(300)])
        #expect(world.log.lines.contains {
            $0.hasPrefix("notice could not report to the CA; reporting again with the next change or heartbeat") && $0.contains("connection refused")
        }, "\(world.log.lines)")
        // The next change is reported as usual once the CA answers again.
        world.source.answer(nil)
        world.serve("0b")
        try await world.waitForDeadlines([world.clock.now.addingTimeInterval(1)])
        world.clock.advance(by: 1)
        #expect(try await world.report(1).servingSerial == "0b")
        #expect(world.source.calls == 2)
    }

    @Test func anOlderCAIsToldOnceAndAskedAgainOnlyAtTheNextHeartbeat() async throws {
        let world = ReporterWorld()
        world.source.answer(RPCError(code: .unimplemented, message: "Method not found"))
        world.serve("0a")
        let running = world.start()
        defer { running.cancel() }
        try await world.waitForDeadlines([world.clock.now.addingTimeInterval(1)])
        world.clock.advance(by: 1)
        try await world.waitForCalls(1)
        let beat = world.clock.now.addingTimeInterval(300)
        // A rotation while paused: not sent.
        world.serve("0b")
        world.clock.advance(by: 1)
        try await world.waitForDeadlines([beat])
        #expect(world.source.calls == 1)
        world.clock.advance(to: beat)
        try await world.waitForCalls(2)
        try await world.waitForDeadlines([beat.addingTimeInterval(300)])
        let said = world.log.lines.filter { $0.hasPrefix("notice the CA does not take fleet reports (an older version)") }
        #expect(said.count == 1, "\(world.log.lines)")
        // Upgraded: the heartbeat is taken and carries the rotation.
        world.source.answer(nil)
        world.clock.advance(to: beat.addingTimeInterval(300))
        #expect(try await world.report(1).servingSerial == "0b")
        #expect(world.source.calls == 3)
    }

    @Test func longErrorsAndHostNamesAreCutAtACharacterBoundary() {
        #expect(FleetReporter.prefix(String(repeating: "é", count: 600), bytes: 1024).utf8.count == 1024)
        #expect(FleetReporter.prefix(String(repeating: "a", count: 1023) + "é", bytes: 1024).utf8.count == 1023)
        var snapshot = AgentSnapshot()
        snapshot.lastError = String(repeating: "x", count: 5000)
        let report = FleetReporter.report(snapshot, hostName: String(repeating: "h", count: 300))
        #expect(report.lastError.utf8.count == 1024 && report.hostName.utf8.count == 253)
    }
}

/// A reporter on a manual clock, reporting to a recording source through one replica.
private final class ReporterWorld: Sendable {
    let clock = ManualAgentClock()
    let state = AgentState()
    let source = RecordingReportSource()
    let log = CollectedLog()
    let reporter: FleetReporter

    init(heartbeat: TimeInterval = 300, random: Double = 0) {
        let replicas = CAReplicas(CAAddressList(HostPort(host: "127.0.0.1", port: 1)), logger: log.logger)
        reporter = FleetReporter(replicas: replicas, source: source, state: state, clock: clock, logger: log.logger,
                                 heartbeat: heartbeat, random: { random })
    }

    /// The listener now serves `serial`.
    func serve(_ serial: String) {
        state.update {
            $0.servingSerial = serial
            $0.servingNotAfter = Date(timeIntervalSince1970: 2_000_000_000)
        }
    }

    func start() -> Task<Void, any Error> {
        Task { try await reporter.reportForever() }
    }

    func startAndTakeTheFirstReport() async throws -> Task<Void, any Error> {
        let running = start()
        try await waitForDeadlines([clock.now.addingTimeInterval(1)])
        clock.advance(by: 1)
        _ = try await report(1)
        return running
    }

    /// Waits until the reporter sleeps until exactly these moments.
    func waitForDeadlines(_ deadlines: [Date]) async throws {
        try await waitUntil("deadlines \(deadlines)") { self.clock.deadlines == deadlines }
    }

    func waitForCalls(_ count: Int) async throws {
        try await waitUntil("\(count) calls") { self.source.calls >= count }
    }

    /// The `count`-th report the CA took, once it came.
    func report(_ count: Int) async throws -> Vouch_V1_AgentReport {
        try await waitUntil("\(count) reports") { self.source.reports.count >= count }
        #expect(source.reports.count == count, "exactly \(count) reports")
        return source.reports[count - 1]
    }

    private func waitUntil(_ what: String, _ condition: @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw ClockWaitTimedOut(description: "timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(2))
        }
    }
}

/// Records each ReportAgent call; answers with `answer`'s error, or takes the report.
private final class RecordingReportSource: FleetReportSource {
    private let state = Mutex<(reports: [Vouch_V1_AgentReport], calls: Int, error: RPCError?)>(([], 0, nil))

    var reports: [Vouch_V1_AgentReport] { state.withLock { $0.reports } }
    var calls: Int { state.withLock { $0.calls } }
    func answer(_ error: RPCError?) { state.withLock { $0.error = error } }

    func report(_ address: HostPort, _ report: Vouch_V1_AgentReport) async throws {
        try state.withLock { state in
            state.calls += 1
            if let error = state.error { throw error }
            state.reports.append(report)
        }
    }
}
