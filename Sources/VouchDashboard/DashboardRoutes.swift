import Foundation
import VouchHTTP

/// Answers the dashboard's requests: access checks first, then one page per path, each read
/// through one connection to the CA.
public struct DashboardRoutes: Sendable {
    let access: DashboardAccess
    let connector: any AdminConnector
    let clock: @Sendable () -> Date

    /// Every response: no script may run (none is sent), nothing is loaded from elsewhere, no
    /// framing, no guessing of types, no Referer carrying a URL, nothing kept in caches.
    public static let securityHeaders: [(name: String, value: String)] = [
        ("Content-Security-Policy",
         "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ]

    public init(access: DashboardAccess, connector: any AdminConnector, clock: @escaping @Sendable () -> Date = Date.init) {
        self.access = access
        self.connector = connector
        self.clock = clock
    }

    public func respond(_ request: HTTPRequest) async -> HTTPResponse {
        var response = await route(request)
        response.headers = Self.securityHeaders + response.headers
        return response
    }

    private func route(_ request: HTTPRequest) async -> HTTPResponse {
        guard access.isListenerHost(request.host) else {
            return .text(421, "misdirected request: the Host header must be \(access.listen) or localhost:\(access.listen.port) "
                              + "(a page on another site may not reach the dashboard through its own DNS name)")
        }
        guard request.method == "GET" else {
            var response = HTTPResponse.text(405, "method not allowed: the dashboard is read-only (GET only)")
            response.headers = [("Allow", "GET")]
            return response
        }
        // Nothing secret in these: the 403 page uses them too; the pages load them below the key.
        if let asset = Self.asset(request.path) { return asset }
        // No cookie: a browser sends cookies to every port of 127.0.0.1, so any local web server
        // the operator visits would receive it. A path goes to its own origin only.
        guard let path = access.pagePath(request.path) else { return forbidden() }
        if let asset = Self.asset(path) { return asset }
        return await page(path: path, query: QueryString(parsing: request.query))
    }

    private static func asset(_ path: String) -> HTTPResponse? {
        switch path {
        case "/style.css": HTTPResponse(status: 200, contentType: "text/css; charset=utf-8", body: Array(StyleSheet.css.utf8))
        case "/icon.svg": HTTPResponse(status: 200, contentType: "image/svg+xml", body: Array(StyleSheet.icon.utf8))
        default: nil
        }
    }

    private func forbidden() -> HTTPResponse {
        html(403, PageLayout.message(title: "Key needed", status: 403, [
            "The dashboard reads the CA with the admin certificate, so its pages are only at the secret address "
                + "`vouch ui` printed when it started (http://\(access.listen)/<key>/).",
            "Open the URL `vouch ui` printed, or restart `vouch ui` for a new one.",
        ], path: nil, server: connector.serverDescription, now: clock()))
    }

    private func page(path: String, query: QueryString) async -> HTTPResponse {
        let now = clock()
        guard PageLayout.sections.contains(where: { $0.path == path }) else {
            return html(404, PageLayout.message(title: "Not found", status: 404, ["No page at this address."], path: nil,
                                                server: connector.serverDescription, now: now))
        }
        do {
            let page = try await connector.withReader { reader -> Page in
                switch path {
                case "/expiry": return try await ExpiryPage.load(reader, query: query, now: now)
                case "/revocations": return try await RevocationsPage.load(reader)
                case "/fleet": return try await FleetPage.load(reader, query: query)
                case "/audit": return try await AuditPage.load(reader)
                default: return try await InventoryPage.load(reader, query: query)
                }
            }
            return html(page.status, PageLayout.render(page, path: path, server: connector.serverDescription, now: now))
        } catch {
            // The CA is down, refuses the admin certificate, or the certificate cannot be read: say so, as a gateway would.
            return html(502, PageLayout.message(title: "The CA did not answer", status: 502, [
                "The CA at \(connector.serverDescription) did not answer this page's reads: \(error.pageDescription)",
                "Check that `vouch server` runs there and that the admin certificate in the CA directory is valid; reload the page to try again.",
            ], path: path, server: connector.serverDescription, now: now))
        }
    }

    private func html(_ status: Int, _ document: String) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/html; charset=utf-8", body: Array(document.utf8))
    }
}
