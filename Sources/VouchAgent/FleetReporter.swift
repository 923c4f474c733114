import Foundation
import GRPCCore
import Logging
import Synchronization
import VouchAPI

/// Tells the CA what the agent serves and trusts (ReportAgent), so `vouch fleet list` sees
/// agents that serve a revoked, expired or superseded certificate, hold an old bundle, fail to
/// renew or went silent. Reports go at start, when the served certificate or the trust bundle
/// held changes, on a new renewal error (at most one such report per `errorInterval`), and on a
/// jittered heartbeat. Each report is the whole current state, so changes close together are
/// sent as one, `settle` after the first. A failed report is logged (rate-limited) and never
/// stops the agent; a CA too old to take reports is told again only at the next heartbeat.
final class FleetReporter: Sendable {
    private struct Pending {
        /// The first change not yet reported (the start counts as one).
        var changeSince: Date?
        /// The first renewal error not yet reported.
        var errorSince: Date?
    }

    let replicas: CAReplicas
    let source: any FleetReportSource
    let state: AgentState
    let clock: any AgentClock
    let logger: Logger
    /// Seconds between heartbeats, jittered by ±10%; 0: none (changes are still reported).
    let heartbeat: TimeInterval
    /// How long after a change the report goes, so changes close together make one report.
    let settle: TimeInterval
    /// Shortest time between two reports sent for a renewal error.
    let errorInterval: TimeInterval
    let hostName: String
    /// In -1...1, for the heartbeat's jitter.
    let random: @Sendable () -> Double
    private let pending = Mutex(Pending())
    private let wake = WakeSignal()
    /// A CA that fails every call would otherwise cost a line per report.
    private let failureLog = RateLimitedLog(burst: 3, perSecond: 1.0 / 300)

    init(replicas: CAReplicas, source: any FleetReportSource, state: AgentState, clock: any AgentClock, logger: Logger,
         heartbeat: TimeInterval, settle: TimeInterval = 1, errorInterval: TimeInterval = 30,
         hostName: String = FleetReporter.localHostName(), random: @escaping @Sendable () -> Double = { Double.random(in: -1...1) }) {
        self.replicas = replicas
        self.source = source
        self.state = state
        self.clock = clock
        self.logger = logger
        self.heartbeat = heartbeat
        self.settle = settle
        self.errorInterval = errorInterval
        self.hostName = hostName
        self.random = random
        state.observe { [weak self] before, after in self?.noticed(from: before, to: after) }
    }

    /// What in a change of the agent's state is worth a report.
    private func noticed(from before: AgentSnapshot, to after: AgentSnapshot) {
        if after.servingSerial != before.servingSerial || after.trustGeneration != before.trustGeneration
            || after.bundleSHA256 != before.bundleSHA256 || after.rootSerials != before.rootSerials {
            note { $0.changeSince = $0.changeSince ?? $1 }
        }
        if !after.lastError.isEmpty, after.lastErrorAt != nil, after.lastErrorAt != before.lastErrorAt {
            note { $0.errorSince = $0.errorSince ?? $1 }
        }
    }

    private func note(_ body: (inout Pending, Date) -> Void) {
        let now = clock.now
        pending.withLock { body(&$0, now) }
        wake.signal()
    }

    /// The next heartbeat after one sent at `now`.
    private func heartbeatAfter(_ now: Date) -> Date? {
        heartbeat > 0 ? now.addingTimeInterval(heartbeat * (1 + 0.1 * random())) : nil
    }

    /// Reports for as long as the agent runs, starting with one `settle` after the start.
    func reportForever() async throws {
        note { pending, now in pending.changeSince = now }
        var nextHeartbeat = heartbeatAfter(clock.now)
        var lastErrorReport: Date?
        /// Set by an `unimplemented` answer: until then, only the heartbeat asks again.
        var pausedUntil: Date?
        var saidUnimplemented = false
        while !Task.isCancelled {
            let now = clock.now
            let waiting = pending.withLock { $0 }
            let changeDue = waiting.changeSince.map { $0.addingTimeInterval(settle) }
            let errorAllowed = lastErrorReport.map { $0.addingTimeInterval(errorInterval) } ?? .distantPast
            let errorDue = waiting.errorSince.map { max($0.addingTimeInterval(settle), errorAllowed) }
            let due = [changeDue, errorDue, nextHeartbeat].compactMap { $0 }.min()
            guard let due, due <= now else {
                try await sleep(until: due)
                continue
            }
            let isHeartbeat = nextHeartbeat.map { $0 <= now } ?? false
            // The report carries everything pending; while paused, only the heartbeat asks.
            pending.withLock { $0 = Pending() }
            if let until = pausedUntil, until > now, !isHeartbeat { continue }
            pausedUntil = nil
            if waiting.errorSince != nil { lastErrorReport = now }
            nextHeartbeat = heartbeatAfter(now)
            do {
                try await send()
            } catch let error where isShutdown(error) {
                throw CancellationError()
            } catch let error as RPCError where error.code == .unimplemented {
                if !saidUnimplemented {
                    logger.notice("the CA does not take fleet reports (an older version); asking again with the next heartbeat",
                                  metadata: ["error": "\(error.message)"])
                    saidUnimplemented = true
                }
                pausedUntil = nextHeartbeat
            } catch {
                guard let suppressed = failureLog.admit(now: clock.now) else { continue }
                var metadata: Logger.Metadata = ["error": "\(describe(error))"]
                if suppressed > 0 { metadata["not_logged"] = "\(suppressed)" }
                logger.notice("could not report to the CA; reporting again with the next change or heartbeat", metadata: metadata)
            }
        }
    }

    /// Returns at `deadline` (never, if nil), or earlier when something changed.
    private func sleep(until deadline: Date?) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let deadline { group.addTask { [clock] in try await clock.sleep(until: deadline) } }
            group.addTask { [wake] in await wake.wait() }
            try await group.next()
            group.cancelAll()
        }
        try Task.checkCancellation()
    }

    private func send() async throws {
        let report = Self.report(state.current, hostName: hostName)
        try await replicas.call("ReportAgent") { try await source.report($0, report) }
        logger.debug("reported to the CA", metadata: ["serving_serial": "\(report.servingSerial)",
                                                      "trust_generation": "\(report.trustGeneration)"])
    }
}
