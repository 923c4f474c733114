import Foundation
import Synchronization

/// The trust bundle confirmation this server last stored per certificate serial, so confirmations
/// cost a database write only when they say something new. Written: the first confirmation of a
/// serial, a higher generation (the CA's own generation bounds how often that can happen), and the
/// first change of digest within a minute of the last write; any other change waits until that
/// minute is over. A repeat of what is stored is never written. An agent alternating two digests
/// therefore costs at most two writes a minute, not one per call. Bounded: when full it starts
/// afresh (a repeat then costs one write, as the first did).
final class RecentConfirmations: Sendable {
    struct Entry: Equatable {
        let generation: Int64
        let bundleSHA256: [UInt8]
    }

    /// What was last written for a serial, when, and whether that minute's change was spent.
    private struct Written {
        var entry: Entry
        var at: Date
        var changeSpent: Bool
    }

    static let interval: TimeInterval = 60

    private let entries = Mutex<[String: Written]>([:])
    let limit: Int

    init(limit: Int = 100_000) { self.limit = limit }

    /// Calls `write` when `entry` is worth storing for `serial` at `now` (see the type), and
    /// remembers it once `write` returns.
    func confirm(_ entry: Entry, serial: String, now: Date = Date(), write: () async throws -> Void) async throws {
        let decision = decide(entry, serial: serial, now: now)
        guard decision != .skip else { return }
        try await write()
        entries.withLock { entries in
            if entries.count >= limit, entries[serial] == nil { entries.removeAll(keepingCapacity: true) }
            entries[serial] = Written(entry: entry, at: now, changeSpent: decision == .writeSpendingChange)
        }
    }

    private enum Decision { case skip, write, writeSpendingChange }

    private func decide(_ entry: Entry, serial: String, now: Date) -> Decision {
        entries.withLock { entries in
            guard let last = entries[serial] else { return .write }
            if entry == last.entry { return .skip }
            if entry.generation > last.entry.generation { return .write }
            if now.timeIntervalSince(last.at) >= Self.interval { return .write }
            return last.changeSpent ? .skip : .writeSpendingChange
        }
    }
}
