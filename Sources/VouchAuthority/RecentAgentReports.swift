import Foundation
import Synchronization

/// The agent reports this process stored lately per client certificate serial. An identical
/// repeat of the last one within `interval` (a retry, a replica failover) is acknowledged without
/// a database write; a changed report is written, at most `writesPerInterval` per `interval` per
/// certificate (an agent's reports come minutes apart, a burst at a rotation is a few): beyond
/// that a certificate holder looping on changed reports is refused instead of costing a write per
/// call. Bounded: when full it starts afresh (a repeat then costs one write, as the first did).
final class RecentAgentReports: Sendable {
    private struct Written {
        var report: AgentReportRecord
        var at: Date
        /// Writes since `windowStart`.
        var windowStart: Date
        var writes: Int
    }

    static let interval: TimeInterval = 10
    static let writesPerInterval = 10

    private let entries = Mutex<[String: Written]>([:])
    let limit: Int

    init(limit: Int = 100_000) { self.limit = limit }

    /// Whether `report` from `serial` repeats what was stored for it less than `interval` before
    /// `now` (then nothing is to be written). Throws `resourceExhausted` when `serial` has used up
    /// its writes for the current interval.
    func isRepeat(_ report: AgentReportRecord, serial: String, now: Date) throws -> Bool {
        try entries.withLock { entries in
            guard let last = entries[serial] else { return false }
            let age = now.timeIntervalSince(last.at)
            if last.report == report && age >= 0 && age < Self.interval { return true }
            let windowAge = now.timeIntervalSince(last.windowStart)
            if windowAge >= 0, windowAge < Self.interval, last.writes >= Self.writesPerInterval {
                throw AuthorityError(.resourceExhausted, "more than \(Self.writesPerInterval) changed agent reports in "
                                     + "\(Int(Self.interval)) s from certificate \(serial); report again later")
            }
            return false
        }
    }

    /// Remembers that `report` from `serial` was stored at `now`.
    func stored(_ report: AgentReportRecord, serial: String, now: Date) {
        entries.withLock { entries in
            if entries.count >= limit, entries[serial] == nil { entries.removeAll(keepingCapacity: true) }
            var written = entries[serial] ?? Written(report: report, at: now, windowStart: now, writes: 0)
            let windowAge = now.timeIntervalSince(written.windowStart)
            if windowAge < 0 || windowAge >= Self.interval { (written.windowStart, written.writes) = (now, 0) }
            written.report = report
            written.at = now
            written.writes += 1
            entries[serial] = written
        }
    }
}
