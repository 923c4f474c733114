import Foundation

extension Date {
    /// Whole Unix seconds for an API field, clamped to Int64. `Int64(_:)` traps on a Double out of
    /// range or NaN, and these dates come from the database: one edited row (a notAfter of 1e300)
    /// must not take every replica down on the next listing.
    public var unixSeconds: Int64 {
        let seconds = timeIntervalSince1970.rounded(.towardZero)
        guard !seconds.isNaN else { return 0 }
        if seconds >= 9.2e18 { return .max }
        if seconds <= -9.2e18 { return .min }
        return Int64(seconds)
    }
}
