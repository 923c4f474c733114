import Foundation
import Synchronization

/// The highest trust bundle generation each certificate's holder confirmed, read from the store
/// at most every `maximumAge` (and told of confirmations made here at once), so renewals between
/// a root's activation and the old root's retirement can pick their chain without a read each.
final class TrustConfirmationCache: Sendable {
    private struct State {
        var readAt: Date?
        var generations: [String: Int64] = [:]
    }

    private let state = Mutex(State())
    private let maximumAge: TimeInterval

    init(maximumAge: TimeInterval = 5) { self.maximumAge = maximumAge }

    /// The generation `serial`'s holder confirmed, nil if none (or the store cannot say).
    func generation(of serial: String, now: Date, read: () async throws -> [TrustConfirmation]) async -> Int64? {
        let fresh = state.withLock { state in state.readAt.map { now.timeIntervalSince($0) < maximumAge } ?? false }
        if !fresh, let confirmations = try? await read() {
            state.withLock { state in
                for confirmation in confirmations {
                    state.generations[confirmation.serial] = max(state.generations[confirmation.serial] ?? .min, confirmation.generation)
                }
                state.readAt = now
            }
        }
        return state.withLock { $0.generations[serial] }
    }

    func record(serial: String, generation: Int64) {
        state.withLock { $0.generations[serial] = max($0.generations[serial] ?? .min, generation) }
    }
}
