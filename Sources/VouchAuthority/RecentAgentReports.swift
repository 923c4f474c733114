import Foundation
import Synchronization

/// The agent report this process last stored per client certificate serial, so an identical
/// repeat within `interval` (a retry, a replica failover, an agent looping) is acknowledged
/// without a database write. A changed report is always written. Bounded: when full it starts
/// afresh (a repeat then costs one write, as the first did).
final class RecentAgentReports: Sendable {
    private struct Written {
        var report: AgentReportRecord
        var at: Date
    }

    static let interval: TimeInterval = 10

    private let entries = Mutex<[String: Written]>([:])
    let limit: Int

    init(limit: Int = 100_000) { self.limit = limit }

    /// Whether `report` from `serial` repeats what was stored for it less than `interval` before `now`.
    func isRepeat(_ report: AgentReportRecord, serial: String, now: Date) -> Bool {
        entries.withLock { entries in
            guard let last = entries[serial] else { return false }
            let age = now.timeIntervalSince(last.at)
            return last.report == report && age >= 0 && age < Self.interval
        }
    }

    /// Remembers that `report` from `serial` was stored at `now`.
    func stored(_ report: AgentReportRecord, serial: String, now: Date) {
        entries.withLock { entries in
            if entries.count >= limit, entries[serial] == nil { entries.removeAll(keepingCapacity: true) }
            entries[serial] = Written(report: report, at: now)
        }
    }
}
