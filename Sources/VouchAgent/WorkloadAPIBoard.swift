import Foundation
import Synchronization

/// What the Workload API can hand out now.
enum WorkloadAPIPhase: Sendable, Equatable {
    /// No identity yet (the agent is enrolling): callers are told Unavailable and retry.
    case starting
    case serving(WorkloadAPIMaterial)
    /// The certificate expired or was revoked and the agent waits for a new token: open streams
    /// end with PermissionDenied, which tells SPIFFE clients to stop using what they hold.
    case withdrawn(String)
}

/// Holds the current phase and tells every open Workload API stream of each new one.
final class WorkloadAPIBoard: Sendable {
    private struct State {
        var current = WorkloadAPIPhase.starting
        var watchers: [UUID: AsyncStream<WorkloadAPIPhase>.Continuation] = [:]
        var finished = false
    }

    private let state = Mutex(State())

    init() {}

    var current: WorkloadAPIPhase { state.withLock { $0.current } }

    /// Installs `phase` and tells the streams, unless it is the one they have.
    func publish(_ phase: WorkloadAPIPhase) {
        // Yielded under the lock, so each stream sees the phases in the order they were installed.
        state.withLock { state in
            guard state.current != phase, !state.finished else { return }
            state.current = phase
            for watcher in state.watchers.values { watcher.yield(phase) }
        }
    }

    /// The current phase at once, then each new one; ends when the consumer stops or on `finish()`.
    /// A slow consumer skips to the newest phase: each message is the complete state anyway.
    func updates() -> AsyncStream<WorkloadAPIPhase> {
        let (stream, continuation) = AsyncStream.makeStream(of: WorkloadAPIPhase.self, bufferingPolicy: .bufferingNewest(1))
        let id = UUID()
        let open = state.withLock { state in
            guard !state.finished else { return false }
            continuation.yield(state.current)
            state.watchers[id] = continuation
            return true
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

    /// Ends every stream (graceful shutdown waits for them); later ones end at once.
    func finish() {
        let watchers = state.withLock { state in
            state.finished = true
            defer { state.watchers.removeAll() }
            return Array(state.watchers.values)
        }
        for watcher in watchers { watcher.finish() }
    }
}
