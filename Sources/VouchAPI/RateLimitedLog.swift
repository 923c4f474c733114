import Foundation
import Logging
import Synchronization

/// A token bucket for log lines and audit rows a remote peer can trigger at will: a burst
/// of `burst`, then `perSecond`. What is held back is counted, and the next event that
/// passes carries the count, so a flood costs a summary instead of a full disk.
public final class RateLimitedLog: Sendable {
    private struct Bucket {
        var tokens: Double
        var refilledAt: Date
        var suppressed = 0
    }

    private let bucket: Mutex<Bucket>
    let burst: Double
    let perSecond: Double

    public init(burst: Int, perSecond: Double, now: Date = Date()) {
        self.burst = Double(burst)
        self.perSecond = perSecond
        self.bucket = Mutex(Bucket(tokens: Double(burst), refilledAt: now))
    }

    /// nil when this event is to be held back; otherwise how many were held back before it.
    public func admit(now: Date = Date()) -> Int? {
        bucket.withLock { bucket in
            bucket.tokens = min(burst, bucket.tokens + max(0, now.timeIntervalSince(bucket.refilledAt)) * perSecond)
            bucket.refilledAt = now
            guard bucket.tokens >= 1 else {
                bucket.suppressed += 1
                return nil
            }
            bucket.tokens -= 1
            defer { bucket.suppressed = 0 }
            return bucket.suppressed
        }
    }

    /// Events held back and not yet reported; resets the count.
    public func takeSuppressed() -> Int {
        bucket.withLock { bucket in
            defer { bucket.suppressed = 0 }
            return bucket.suppressed
        }
    }

    /// Logs through `logger` if admitted, adding `suppressed` to the metadata when events were held back.
    public func log(_ logger: Logger, _ level: Logger.Level, _ message: Logger.Message, metadata: Logger.Metadata) {
        guard let suppressed = admit() else { return }
        var metadata = metadata
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        logger.log(level: level, message, metadata: metadata)
    }
}
