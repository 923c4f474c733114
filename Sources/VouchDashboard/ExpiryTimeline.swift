/// How many certificates expire in each clock hour (UTC) from the hour holding `now` to the one
/// holding `now + hours`: bucket i counts notAfter in [start + i h, start + (i+1) h).
public struct ExpiryTimeline: Sendable, Equatable {
    /// Unix seconds of the first bucket's hour.
    public let start: Int64
    public let counts: [Int]

    /// Counts the notAfter values in (now, now + hours]: past ones have expired already, later
    /// ones are outside the window (what `expiring_within_seconds` selects).
    public init(notAfters: [Int64], now: Int64, hours: Int) {
        start = now - ((now % 3600) + 3600) % 3600
        let end = now + Int64(hours) * 3600
        var counts = Array(repeating: 0, count: Int((end - start) / 3600) + 1)
        for notAfter in notAfters where notAfter > now && notAfter <= end {
            counts[Int((notAfter - start) / 3600)] += 1
        }
        self.counts = counts
    }

    public func hourStart(_ index: Int) -> Int64 { start + Int64(index) * 3600 }

    public var total: Int { counts.reduce(0, +) }

    /// Bars drawn by the server, one `rect` per hour with its hour and count as data
    /// attributes and a tooltip; no script, no inline style.
    func svg() -> HTML {
        let width = 960, height = 220, left = 40, bottom = 28, top = 10
        let plotHeight = height - bottom - top
        let peak = max(counts.max() ?? 0, 1)
        let step = Double(width - left - 10) / Double(max(counts.count, 1))
        var parts: [HTML] = [
            el("title", [:], text("Certificates expiring per hour (UTC)")),
            el("line", ["class": "axis", "x1": "\(left)", "y1": "\(height - bottom)", "x2": "\(width - 10)", "y2": "\(height - bottom)"]),
            el("text", ["x": "\(left - 6)", "y": "\(top + 10)", "text-anchor": "end"], text("\(peak)")),
            el("text", ["x": "\(left - 6)", "y": "\(height - bottom)", "text-anchor": "end"], "0"),
        ]
        for (index, count) in counts.enumerated() {
            let x = Double(left) + Double(index) * step
            let barHeight = Double(plotHeight) * Double(count) / Double(peak)
            let hour = DashboardTime.text(hourStart(index))
            parts.append(el("rect", ["class": "bar", "x": format(x + 1), "y": format(Double(height - bottom) - barHeight),
                                     "width": format(max(step - 2, 1)), "height": format(barHeight),
                                     "data-hour": hour, "data-count": "\(count)"],
                            el("title", [:], text("\(hour): \(count) expiring"))))
            // A label every 6 hours: the hour of day, and the date at midnight.
            let hourOfDay = Int((hourStart(index) / 3600) % 24)
            if hourOfDay % 6 == 0 {
                let label = hourOfDay == 0 ? String(hour.prefix(10)) : (hourOfDay < 10 ? "0" : "") + "\(hourOfDay):00"
                parts.append(el("text", ["x": format(x), "y": "\(height - 8)"], text(label)))
            }
        }
        return el("svg", ["class": "chart", "id": "expiry-chart", "viewBox": "0 0 \(width) \(height)", "role": "img",
                          "aria-label": "Certificates expiring per hour", "xmlns": "http://www.w3.org/2000/svg"], parts)
    }

    private func format(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }
}
