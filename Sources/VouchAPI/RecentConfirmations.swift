import Synchronization

/// The trust bundle confirmation this server last stored per certificate serial: an agent confirms
/// when its stream opens and after each change, and most repeat what is stored, so a repeat is
/// answered without a database write. Bounded: when full it starts afresh (a repeat then costs one
/// write, as the first did).
final class RecentConfirmations: Sendable {
    struct Entry: Equatable {
        let generation: Int64
        let bundleSHA256: [UInt8]
    }

    private let entries = Mutex<[String: Entry]>([:])
    let limit: Int

    init(limit: Int = 100_000) { self.limit = limit }

    func isStored(_ entry: Entry, serial: String) -> Bool {
        entries.withLock { $0[serial] == entry }
    }

    func stored(_ entry: Entry, serial: String) {
        entries.withLock { entries in
            if entries.count >= limit, entries[serial] == nil { entries.removeAll(keepingCapacity: true) }
            entries[serial] = entry
        }
    }
}
