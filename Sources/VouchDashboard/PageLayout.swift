import Foundation

/// One rendered page before the shell around it.
struct Page: Sendable {
    var title: String
    var content: [HTML]
    var status = 200
}

/// The shell every page shares: navigation, heading, the CA it read from and when.
enum PageLayout {
    static let sections: [(path: String, name: String)] = [
        ("/", "Inventory"), ("/expiry", "Expiry"), ("/revocations", "Revocations"), ("/fleet", "Fleet"), ("/audit", "Audit"),
    ]

    /// `path`: the page's own, below the key; nil for a page outside the pages (a 403 at any
    /// path, a 404), which has no navigation and loads its stylesheet from `/`.
    static func render(_ page: Page, path: String?, server: String, now: Date) -> String {
        let navigation = el("nav", [:], path == nil ? [] : sections.map { section in
            section.path == path
                ? el("a", ["href": relative(section.path), "class": "current", "aria-current": "page"], text(section.name))
                : el("a", ["href": relative(section.path)], text(section.name))
        })
        return HTML.document(title: "Vouch: \(page.title)", assets: path == nil ? "/" : "", body: [
            el("header", [:], el("span", ["class": "brand"], "Vouch"), navigation),
            el("main", [:], [el("h1", [:], text(page.title))] + page.content),
            el("footer", [:], text("Read from the CA at \(server) at \(DashboardTime.text(now)), with the admin certificate. Read-only.")),
        ])
    }

    /// A page's link relative to any page (they all live in `/<key>/`): the key stays in the path
    /// without being written into the page.
    static func relative(_ path: String) -> String { path == "/" ? "./" : String(path.dropFirst()) }

    /// A short page of its own, e.g. when the CA does not answer.
    static func message(title: String, status: Int, _ lines: [String], path: String?, server: String, now: Date) -> String {
        render(Page(title: title, content: lines.map { el("p", ["class": "notice"], text($0)) }, status: status),
               path: path, server: server, now: now)
    }
}

/// Times as the CLI prints them in JSON: ISO 8601, UTC.
enum DashboardTime {
    static func text(_ seconds: Int64) -> String {
        seconds == 0 ? "" : text(Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    static func text(_ date: Date) -> String { date.formatted(.iso8601) }
}

/// A table with a header row; `rows` already made of `td` cells.
/// `numeric`: headers of columns aligned right.
func table(_ id: String, headers: [String], numeric: Set<String> = [], rows: [HTML], empty: String) -> HTML {
    guard !rows.isEmpty else { return el("p", ["class": "empty", "id": id], text(empty)) }
    return el("table", ["id": id],
              el("thead", [:], el("tr", [:], headers.map { header in
                  numeric.contains(header) ? el("th", ["scope": "col", "class": "number"], text(header)) : el("th", ["scope": "col"], text(header))
              })),
              el("tbody", [:], rows))
}

func cell(_ value: String, _ className: String = "") -> HTML {
    className.isEmpty ? el("td", [:], text(value)) : el("td", ["class": className], text(value))
}
