import Synchronization

/// The pending writes of a group commit and whether a drain is running, under one lock: writes
/// that arrive while a batch commits wait and share the next. Both stores batch with it.
public final class BatchQueue<Job: Sendable>: Sendable {
    private struct State {
        var pending: [Job] = []
        var draining = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Adds a job; true when the caller must start a drain (none is running).
    public func append(_ job: Job) -> Bool {
        state.withLock { state in
            state.pending.append(job)
            if state.draining { return false }
            state.draining = true
            return true
        }
    }

    /// The next batch of at most `limit` jobs, or nil (and the drain ends) when nothing is pending.
    public func takeBatch(limit: Int) -> [Job]? {
        state.withLock { state in
            guard !state.pending.isEmpty else {
                state.draining = false
                return nil
            }
            let batch = Array(state.pending.prefix(limit))
            state.pending.removeFirst(batch.count)
            return batch
        }
    }

    /// Every pending job, ending the drain (the database is gone).
    public func takeAll() -> [Job] {
        state.withLock { state in
            defer { state = State() }
            return state.pending
        }
    }
}
