import Foundation
import Synchronization

/// The revoked serials in memory, for checks on every TLS handshake and RPC
/// without a database read, and a fan-out of new revocations to watchers.
public final class RevocationRegistry: Sendable {
    private struct State {
        var serials: Set<String> = []
        var latestSequence: Int64 = 0
        var watchers: [UUID: AsyncStream<RevocationRecord>.Continuation] = [:]
        /// Set by `finishWatchers()`: a watch that starts afterwards ends at once, or shutdown would wait on it.
        var finished = false
    }

    private let state = Mutex(State())

    public init() {}

    public func isRevoked(serial: String) -> Bool {
        state.withLock { $0.serials.contains(serial) }
    }

    public var latestSequence: Int64 { state.withLock { $0.latestSequence } }

    /// How many certificates are revoked.
    public var count: Int { state.withLock { $0.serials.count } }

    /// Records revocations (from storage at start-up, or a new one) and tells watchers.
    public func add(_ records: [RevocationRecord]) {
        let watchers = state.withLock { state -> [AsyncStream<RevocationRecord>.Continuation] in
            for record in records {
                state.serials.insert(record.serial)
                state.latestSequence = max(state.latestSequence, record.sequence)
            }
            return Array(state.watchers.values)
        }
        for watcher in watchers {
            for record in records { watcher.yield(record) }
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

    /// A stream of revocations added from now on; it ends when the consumer stops or on `finishWatchers()`.
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
