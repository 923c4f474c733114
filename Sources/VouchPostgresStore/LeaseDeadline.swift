import Synchronization

/// Bounds the wait for a pooled connection. While the database is unreachable, PostgresNIO's pool
/// keeps a request waiting until its circuit breaker trips, a minute or more later; a request to
/// the CA should fail well before. Only the wait is bounded: once the work has its connection it
/// runs to its end, so a write is never reported failed after it committed.
final class LeaseDeadline: Sendable {
    private enum State { case waiting, started, expired }
    private let state = Mutex(State.waiting)

    /// True when the work may start: the deadline has not passed (and now cannot).
    func start() -> Bool {
        state.withLock { state in
            guard state == .waiting else { return false }
            state = .started
            return true
        }
    }

    /// True when the deadline passed before the work started (and now it never will).
    func expire() -> Bool {
        state.withLock { state in
            guard state == .waiting else { return false }
            state = .expired
            return true
        }
    }

    /// Runs `work`, which calls `start()` once it holds its connection; throws `timeout` if it
    /// did not get there within `limit`.
    static func run<T: Sendable>(within limit: Duration, timeout: @escaping @Sendable () -> any Error,
                                 _ work: @escaping @Sendable (LeaseDeadline) async throws -> T) async throws -> T {
        let deadline = LeaseDeadline()
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await work(deadline) }
            group.addTask {
                try? await Task.sleep(for: limit)
                if deadline.expire() { throw timeout() }
                return nil
            }
            while let result = try await group.next() {
                if let value = result {
                    group.cancelAll()
                    return value
                }
            }
            // Unreachable: the work either returns a value or throws.
            throw timeout()
        }
    }
}
