import Foundation
import Logging
import Synchronization

/// Lets through at most `burst` events per `interval` and counts the rest, so a flood of
/// refusals costs one summary instead of a full disk. Each event that passes carries how
/// many were suppressed since the previous one.
public final class RateLimitedLog: Sendable {
    private struct Window {
        var start: Date
        var passed = 0
        var suppressed = 0
    }

    private let window: Mutex<Window>
    let burst: Int
    let interval: TimeInterval

    public init(burst: Int, per interval: TimeInterval, now: Date = Date()) {
        self.burst = burst
        self.interval = interval
        self.window = Mutex(Window(start: now))
    }

    /// nil when this event is to be suppressed; otherwise the count suppressed before it.
    public func admit(now: Date = Date()) -> Int? {
        window.withLock { window in
            if now.timeIntervalSince(window.start) >= interval {
                window.start = now
                window.passed = 0
            }
            guard window.passed < burst else {
                window.suppressed += 1
                return nil
            }
            window.passed += 1
            defer { window.suppressed = 0 }
            return window.suppressed
        }
    }

    /// Logs through `logger` if admitted, adding `suppressed` to the metadata when events were dropped.
    public func log(_ logger: Logger, _ level: Logger.Level, _ message: Logger.Message, metadata: Logger.Metadata) {
        guard let suppressed = admit() else { return }
        var metadata = metadata
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        logger.log(level: level, message, metadata: metadata)
    }
}
