import Foundation
import Synchronization

/// A token bucket for log lines a remote peer can trigger at will: a burst of
/// `capacity` lines, then `perSecond`; what is held back is counted so one
/// summary line can report it.
final class LogRateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var refilledAt: Date
        var suppressed = 0
    }

    private let bucket: Mutex<Bucket>
    let capacity: Double
    let perSecond: Double

    init(capacity: Int = 10, perSecond: Double = 1) {
        self.capacity = Double(capacity)
        self.perSecond = perSecond
        bucket = Mutex(Bucket(tokens: Double(capacity), refilledAt: Date()))
    }

    /// Whether a line may be logged now; when it may, also how many were held back since
    /// the last allowed line (report them first).
    func admit(now: Date = Date()) -> (allowed: Bool, suppressed: Int) {
        bucket.withLock { bucket in
            bucket.tokens = min(capacity, bucket.tokens + now.timeIntervalSince(bucket.refilledAt) * perSecond)
            bucket.refilledAt = now
            guard bucket.tokens >= 1 else {
                bucket.suppressed += 1
                return (false, 0)
            }
            bucket.tokens -= 1
            defer { bucket.suppressed = 0 }
            return (true, bucket.suppressed)
        }
    }

    /// Lines held back and not yet reported; resets the count.
    func takeSuppressed() -> Int {
        bucket.withLock { bucket in
            defer { bucket.suppressed = 0 }
            return bucket.suppressed
        }
    }
}
