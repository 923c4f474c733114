import Foundation

/// Throughput and latency percentiles of one measured window.
struct LatencySummary: Encodable {
    let completed: Int
    let failed: Int
    let seconds: Double
    let perSecond: Double
    let p50Milliseconds: Double
    let p99Milliseconds: Double
    let maxMilliseconds: Double

    init(latencies: [Double], failed: Int, seconds: Double) {
        let sorted = latencies.sorted()
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1)
            return sorted[max(0, index)] * 1000
        }
        completed = sorted.count
        self.failed = failed
        self.seconds = seconds
        perSecond = Double(sorted.count) / seconds
        p50Milliseconds = percentile(0.50)
        p99Milliseconds = percentile(0.99)
        maxMilliseconds = (sorted.last ?? 0) * 1000
    }
}
