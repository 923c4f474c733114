import Foundation
import VouchAPI

/// `/expiry?hours=72`: active certificates expiring in each coming hour, as a chart and a table.
enum ExpiryPage {
    static let defaultHours = 72, maximumHours = 24 * 31
    /// Certificates read at most; past it the page says the figures are incomplete.
    static let cap = 100_000

    static func load(_ reader: any AdminReader, query: QueryString, now: Date) async throws -> Page {
        let hours = query["hours"].flatMap { Int($0) }.map { min(max($0, 1), maximumHours) } ?? defaultHours
        var request = Vouch_V1_ListCertificatesRequest()
        request.status = .active
        request.expiringWithinSeconds = Int64(hours) * 3600
        let (certificates, capped) = try await reader.allCertificates(request, cap: cap)
        let timeline = ExpiryTimeline(notAfters: certificates.map(\.notAfter), now: Int64(now.timeIntervalSince1970), hours: hours)
        let rows = timeline.counts.indices.filter { timeline.counts[$0] > 0 }.map { index in
            el("tr", ["data-hour": DashboardTime.text(timeline.hourStart(index))],
               cell(DashboardTime.text(timeline.hourStart(index)), "mono"),
               cell("\(timeline.counts[index])", "number"))
        }
        let windows = el("p", ["class": "windows"], [text("Window: ")] + [(24, "24 hours"), (72, "72 hours"), (168, "7 days"), (720, "30 days")].map { window in
            window.0 == hours ? el("strong", [:], text(window.1)) : el("a", ["href": QueryString.link("/expiry", [("hours", "\(window.0)")])], text(window.1))
        })
        var content = [
            windows,
            el("p", ["class": "summary", "id": "expiry-summary"],
               text("\(timeline.total) active certificate\(timeline.total == 1 ? "" : "s") expire in the next \(hours) hours "
                    + "(hours in UTC; renewed but unexpired certificates count, as `vouch cert list` shows them).")),
            timeline.svg(),
            el("h2", [:], "Per hour"),
            table("expiry-table", headers: ["Hour starting (UTC)", "Expiring"], numeric: ["Expiring"], rows: rows,
                  empty: "No certificate expires in this window."),
        ]
        if capped {
            content.insert(el("p", ["class": "notice"], text("Only the first \(cap) certificates were read: the figures are incomplete.")), at: 0)
        }
        return Page(title: "Expiry in the next \(hours) hours", content: content)
    }
}
