import Foundation
import Synchronization
import VouchCrypto

/// The agent reports this process stored lately per client certificate serial. An identical
/// repeat of the last one within `interval` (a retry, a replica failover) is acknowledged without
/// a database write; a changed report is written, at most `writesPerInterval` per `interval` per
/// certificate (an agent's reports come minutes apart, a burst at a rotation is a few): beyond
/// that a certificate holder looping on changed reports is refused instead of costing a write per
/// call. Bounded: when full it starts afresh (a repeat then costs one write, as the first did).
final class RecentAgentReports: Sendable {
    private struct Written {
        /// SHA-256 of the report (`digest(of:)`): 32 bytes held per certificate, not up to 2 KiB.
        var report: [UInt8]
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
    /// `now` (then nothing is to be written). Otherwise the write is counted here, before it is
    /// made: calls in flight together use up the same budget as calls one after another. Throws
    /// `resourceExhausted` when `serial` has used up its writes for the current interval.
    func isRepeat(_ report: AgentReportRecord, serial: String, now: Date) throws -> Bool {
        try entries.withLock { entries in
            if entries.count >= limit, entries[serial] == nil { entries.removeAll(keepingCapacity: true) }
            var written = entries[serial] ?? Written(report: [], at: now, windowStart: now, writes: 0)
            let age = now.timeIntervalSince(written.at)
            if written.report == Self.digest(of: report) && age >= 0 && age < Self.interval { return true }
            let windowAge = now.timeIntervalSince(written.windowStart)
            if windowAge < 0 || windowAge >= Self.interval { (written.windowStart, written.writes) = (now, 0) }
            guard written.writes < Self.writesPerInterval else {
                throw AuthorityError(.resourceExhausted, "more than \(Self.writesPerInterval) changed agent reports in "
                                     + "\(Int(Self.interval)) s from certificate \(serial); report again later")
            }
            written.writes += 1
            entries[serial] = written
            return false
        }
    }

    /// Remembers that `report` from `serial` was stored at `now` (its write counted by `isRepeat`).
    func stored(_ report: AgentReportRecord, serial: String, now: Date) {
        entries.withLock { entries in
            // Forgotten when the table started afresh meanwhile: the next report is written, as a first one.
            guard var written = entries[serial] else { return }
            written.report = Self.digest(of: report)
            written.at = now
            entries[serial] = written
        }
    }

    /// SHA-256 over every field, each length-prefixed, so two different reports never encode alike.
    static func digest(of report: AgentReportRecord) -> [UInt8] {
        var bytes: [UInt8] = []
        func append(_ text: String) { append(Array(text.utf8)) }
        func append(_ field: [UInt8]) {
            withUnsafeBytes(of: UInt32(field.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: field)
        }
        func append(_ number: Int64) { withUnsafeBytes(of: number.bigEndian) { bytes.append(contentsOf: $0) } }
        append(report.servingSerial)
        for number in [report.servingNotAfter, report.trustGeneration, report.lastRotation, report.lastErrorAt, report.rotations,
                       report.failures, Int64(report.rootSerials.count)] { append(number) }
        append(report.bundleSHA256)
        for serial in report.rootSerials { append(serial) }
        append(report.lastError)
        append(report.agentVersion)
        append(report.hostName)
        return sha256(bytes)
    }
}
