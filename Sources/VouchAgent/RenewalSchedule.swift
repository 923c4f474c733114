import Foundation

/// When to renew, and how long to wait after a failure.
struct RenewalSchedule: Sendable {
    let renewFraction: Double
    let jitterFraction: Double
    /// Seconds.
    let minimumBackoff: TimeInterval
    let maximumBackoff: TimeInterval

    init(renewFraction: Double, jitterFraction: Double, minimumBackoff: TimeInterval, maximumBackoff: TimeInterval) {
        self.renewFraction = renewFraction
        self.jitterFraction = jitterFraction
        self.minimumBackoff = minimumBackoff
        self.maximumBackoff = maximumBackoff
    }

    init(_ configuration: AgentConfiguration) {
        self.init(renewFraction: configuration.renewFraction, jitterFraction: configuration.jitterFraction,
                  minimumBackoff: configuration.minimumBackoff.timeInterval, maximumBackoff: configuration.maximumBackoff.timeInterval)
    }

    /// `renewFraction` of the lifetime after notBefore, moved by up to
    /// ±`jitterFraction` of the lifetime, never after notAfter.
    func renewalTime(notBefore: Date, notAfter: Date, random: Double = Double.random(in: -1...1)) -> Date {
        let lifetime = notAfter.timeIntervalSince(notBefore)
        let offset = lifetime * renewFraction + lifetime * jitterFraction * random
        return notBefore.addingTimeInterval(min(max(offset, 0), lifetime * 0.95))
    }

    /// Exponential backoff for the n-th consecutive failure (n ≥ 1), capped, with ±20% jitter.
    func backoff(failures: Int, random: Double = Double.random(in: -1...1)) -> Double {
        let exponential = minimumBackoff * pow(2, Double(min(failures - 1, 30)))
        let capped = min(exponential, maximumBackoff)
        return max(0.1, capped * (1 + 0.2 * random))
    }
}
