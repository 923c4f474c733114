import Foundation
import Synchronization

/// Holds the current `IssuerSet` and tells followers (the listener, its certificate's renewer,
/// WatchTrustBundle streams) of each new one.
public final class IssuerBoard: Sendable {
    private struct State {
        var current: IssuerSet
        var watchers: [UUID: AsyncStream<IssuerSet>.Continuation] = [:]
        var finished = false
    }

    private let state: Mutex<State>
    /// Held while replacing and telling, so followers see sets in the order they were installed.
    private let delivery = Mutex(())

    public init(_ initial: IssuerSet) { state = Mutex(State(current: initial)) }

    public var current: IssuerSet { state.withLock { $0.current } }

    /// Installs `set` if its generation is higher than the installed one's (two reloads may end
    /// out of order), or as high with `sameGeneration` (a key that could not be loaded now can);
    /// whether it was installed.
    @discardableResult
    func replace(with set: IssuerSet, sameGeneration: Bool = false) -> Bool {
        delivery.withLock { _ in
            let watchers: [AsyncStream<IssuerSet>.Continuation]? = state.withLock { state in
                let current = state.current
                guard !current.isAdopted || set.generation > current.generation
                        || (sameGeneration && set.generation == current.generation) else { return nil }
                state.current = set
                return Array(state.watchers.values)
            }
            guard let watchers else { return false }
            for watcher in watchers { watcher.yield(set) }
            return true
        }
    }

    /// The current set at once, then each new one; ends when the consumer stops or on `finish()`.
    /// A slow consumer skips to the newest set.
    public func updates() -> AsyncStream<IssuerSet> {
        let (stream, continuation) = AsyncStream.makeStream(of: IssuerSet.self, bufferingPolicy: .bufferingNewest(1))
        let id = UUID()
        let open = delivery.withLock { _ in
            state.withLock { state in
                guard !state.finished else { return false }
                continuation.yield(state.current)
                state.watchers[id] = continuation
                return true
            }
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

    /// Ends every update stream (on shutdown); later ones end at once.
    public func finish() {
        let watchers = state.withLock { state in
            state.finished = true
            defer { state.watchers.removeAll() }
            return Array(state.watchers.values)
        }
        for watcher in watchers { watcher.finish() }
    }
}
