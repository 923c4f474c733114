import Foundation
import GRDB
import VouchAuthority

/// Group commit: writes submitted while a transaction is being committed wait
/// and then share the next transaction, so a renewal storm pays one fsync per
/// batch instead of one per certificate.
///
/// Durability is unchanged: no caller is resumed before the transaction that
/// holds its write has committed. Each write runs in its own savepoint, so one
/// that throws (a used-up token, say) rolls back alone and the rest commit.
final class GroupCommitWriter: Sendable {
    private struct Job: Sendable {
        /// Runs the write in a savepoint; returns what to do once the batch has committed.
        let run: @Sendable (Database) -> @Sendable () -> Void
        /// Called instead when the batch as a whole fails to commit.
        let fail: @Sendable (any Error) -> Void
    }

    private let queue = BatchQueue<Job>()
    /// Wakes the drainer when writes arrive and no drain is running.
    private let wakeUp: AsyncStream<Void>.Continuation
    /// The one task that commits batches, for the writer's whole life. Callers never drain
    /// themselves: a caller's cancellation must not fail the other writes of its batch.
    private let drainer: Task<Void, Never>

    /// - Parameter maximumBatch: upper bound on writes per transaction, so one batch cannot hold the writer for long.
    init(pool: DatabasePool, maximumBatch: Int = 256) {
        let (wakeUps, wakeUp) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.wakeUp = wakeUp
        // The pool is held weakly: the store that owns it closes it (checkpointing the WAL) when
        // it is released, without waiting for this task to notice the end of its stream.
        drainer = Task { [queue, weak pool] in
            for await _ in wakeUps {
                guard let pool else {
                    let closed = DatabaseError(resultCode: .SQLITE_MISUSE, message: "database closed")
                    for job in queue.takeAll() { job.fail(closed) }
                    return
                }
                await Self.drain(queue, pool: pool, maximumBatch: maximumBatch)
            }
        }
    }

    /// Writes already queued are committed; then the drainer ends.
    deinit {
        wakeUp.finish()
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job = Job(run: { db in
                do {
                    // Savepoint statements are cached like the others: they run once per write.
                    try db.executeCached(sql: "SAVEPOINT job")
                    do {
                        let result = try body(db)
                        try db.executeCached(sql: "RELEASE SAVEPOINT job")
                        return { continuation.resume(returning: result) }
                    } catch {
                        try db.executeCached(sql: "ROLLBACK TO SAVEPOINT job")
                        try db.executeCached(sql: "RELEASE SAVEPOINT job")
                        throw error
                    }
                } catch {
                    return { continuation.resume(throwing: error) }
                }
            }, fail: { error in continuation.resume(throwing: error) })
            if queue.append(job) {
                wakeUp.yield()
            }
        }
    }

    /// Commits batches until the queue is empty.
    private static func drain(_ queue: BatchQueue<Job>, pool: DatabasePool, maximumBatch: Int) async {
        while let batch = queue.takeBatch(limit: maximumBatch) {
            do {
                let completions = try await pool.write { db in batch.map { $0.run(db) } }
                for complete in completions { complete() }
            } catch {
                for job in batch { job.fail(error) }
            }
        }
    }
}
