import Foundation
import VouchAuthority

/// Group commit for enrollments, the store's busiest write: enrollments submitted while a
/// transaction is being written wait and then share the next one, which takes the writer lock,
/// leases a connection and commits once for all of them.
///
/// No caller is resumed before the transaction holding its enrollment has committed. A token
/// found used up changes nothing (the enrollment is one statement, all or nothing), so that
/// enrollment alone is refused and the others commit. A statement PostgreSQL refuses aborts the
/// whole transaction: then each enrollment of the batch is written again in a transaction of its
/// own, so only the one at fault fails. A lost connection fails the batch, as it fails a single
/// write (whether the commit happened is unknown).
final class EnrollmentBatcher: Sendable {
    private struct Job: Sendable {
        let enrollment: Prepared.Enrollment
        /// True once committed with the token's use, false when the token was no longer usable.
        let continuation: CheckedContinuation<Bool, any Error>
    }

    private let queue = BatchQueue<Job>()
    private let maximumBatch: Int

    /// - Parameter maximumBatch: upper bound on enrollments per transaction, so one batch cannot hold the writer lock for long.
    init(maximumBatch: Int = 64) {
        self.maximumBatch = maximumBatch
    }

    /// Writes `enrollment` in the next batch of `store`; false if its token was no longer usable.
    func write(_ enrollment: Prepared.Enrollment, to store: PostgresAuthorityStore) async throws -> Bool {
        try await withCheckedThrowingContinuation { continuation in
            if queue.append(Job(enrollment: enrollment, continuation: continuation)) {
                // A task of its own: a caller's cancellation must not fail the others of its batch.
                Task { await drain(into: store) }
            }
        }
    }

    /// Commits batches until the queue is empty.
    private func drain(into store: PostgresAuthorityStore) async {
        while let batch = queue.takeBatch(limit: maximumBatch) {
            do {
                let taken = try await store.writeEnrollments(batch.map(\.enrollment))
                for (job, taken) in zip(batch, taken) { job.continuation.resume(returning: taken) }
            } catch is PostgresStoreError where batch.count > 1 {
                for job in batch {
                    do {
                        job.continuation.resume(returning: try await store.writeEnrollments([job.enrollment])[0])
                    } catch {
                        job.continuation.resume(throwing: error)
                    }
                }
            } catch {
                for job in batch { job.continuation.resume(throwing: error) }
            }
        }
    }
}
