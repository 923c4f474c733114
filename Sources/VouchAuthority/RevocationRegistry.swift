import Foundation
import Synchronization

/// The revoked serials in memory, for checks on every TLS handshake and RPC without a database
/// read, and a fan-out of revocations to watchers in the order the store committed them.
///
/// Revocations arrive two ways. `add` takes those this process has just committed: they are refused
/// at once. `addRead` takes those read from the store after `readThrough`, whoever committed them:
/// they are refused too, and only these reach watchers, since only a read of the store gives its
/// order. Several processes may share the store, so a revocation committed here (sequence 7) can be
/// known before another process's earlier one (6) has been read; told at once, a watcher resuming
/// after 7 would never hear of 6. Each revocation reaches each watcher once, in sequence order.
public final class RevocationRegistry: Sendable {
    private struct State {
        var serials: Set<String> = []
        var latestSequence: Int64 = 0
        var readThrough: Int64 = 0
        var watchers: [UUID: AsyncStream<RevocationRecord>.Continuation] = [:]
        /// Set by `finishWatchers()`: a watch that starts afterwards ends at once, or shutdown would wait on it.
        var finished = false
    }

    private let state = Mutex(State())
    /// Held while telling watchers, so they hear of revocations in order.
    private let delivery = Mutex(())

    public init() {}

    public func isRevoked(serial: String) -> Bool {
        state.withLock { $0.serials.contains(serial) }
    }

    /// The highest sequence number known here, committed by this process or read from the store.
    /// Every revocation numbered up to it had been committed when it was learnt (the store numbers
    /// revocations in commit order), so a read of the store since then holds them all.
    public var latestSequence: Int64 { state.withLock { $0.latestSequence } }

    /// Every revocation numbered up to here has been read from the store and told to watchers.
    /// Reads continue after it, never after `latestSequence`, which may run ahead of an unread gap.
    public var readThrough: Int64 { state.withLock { $0.readThrough } }

    /// How many certificates are revoked.
    public var count: Int { state.withLock { $0.serials.count } }

    /// Records revocations this process has just committed: refused from now on. Watchers hear of
    /// them from the read of the store that follows (`addRead`); adding one twice changes nothing.
    public func add(_ records: [RevocationRecord]) {
        state.withLock { state in
            for record in records {
                state.serials.insert(record.serial)
                state.latestSequence = max(state.latestSequence, record.sequence)
            }
        }
    }

    /// Records revocations read from the store, all those numbered above `readThrough` when the
    /// read began, and tells watchers those above `readThrough` now, in order. A read that ended
    /// after a later one adds nothing new. Returns how many watchers had not been told of yet.
    @discardableResult
    public func addRead(_ records: [RevocationRecord]) -> Int {
        // The usual read finds nothing new: no lock for it.
        guard !records.isEmpty else { return 0 }
        // Told under the delivery lock: two reads ending together must not interleave what
        // watchers get. Not under the state lock, which every handshake's `isRevoked` takes: a
        // catch-up of many revocations for many watchers must not stall handshakes. A watcher that
        // starts in between reads these from the store (WatchRevocations subscribes, then reads).
        return delivery.withLock { _ in
            let (fresh, watchers) = state.withLock { state in
                let fresh = records.filter { $0.sequence > state.readThrough }.sorted { $0.sequence < $1.sequence }
                for record in fresh {
                    state.serials.insert(record.serial)
                    state.latestSequence = max(state.latestSequence, record.sequence)
                    state.readThrough = record.sequence
                }
                return (fresh, Array(state.watchers.values))
            }
            for record in fresh {
                for watcher in watchers { watcher.yield(record) }
            }
            return fresh.count
        }
    }

    /// Ends every watch stream (on shutdown), so open WatchRevocations calls complete.
    public func finishWatchers() {
        let watchers = state.withLock { state in
            state.finished = true
            defer { state.watchers.removeAll() }
            return Array(state.watchers.values)
        }
        for watcher in watchers { watcher.finish() }
    }

    /// A stream of the revocations read after `readThrough` as it is now, in sequence order; it ends
    /// when the consumer stops or on `finishWatchers()`.
    public func watch() -> AsyncStream<RevocationRecord> {
        let (stream, continuation) = AsyncStream.makeStream(of: RevocationRecord.self, bufferingPolicy: .bufferingNewest(10_000))
        let id = UUID()
        let open = state.withLock { state in
            if !state.finished { state.watchers[id] = continuation }
            return !state.finished
        }
        guard open else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.watchers.removeValue(forKey: id) }
        }
        return stream
    }
}
