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
        // Nothing secret in these: the 403 page uses them too.
        if request.path == "/style.css" {
            return HTTPResponse(status: 200, contentType: "text/css; charset=utf-8", body: Array(StyleSheet.css.utf8))
        }
        if request.path == "/icon.svg" {
            return HTTPResponse(status: 200, contentType: "image/svg+xml", body: Array(StyleSheet.icon.utf8))
        }
        let query = QueryString(parsing: request.query)
        if let key = query["key"] {
            guard access.isKey(key) else { return forbidden(request.path, "the key in this URL is not the one `vouch ui` printed.") }
            // The key leaves the address bar and the history; the cookie carries it from now on. Only to
            // a page of ours: `//host/` would send the browser elsewhere.
            let page = PageLayout.sections.contains { $0.path == request.path } ? request.path : "/"
            return HTTPResponse(status: 303, contentType: "text/plain; charset=utf-8", body: [],
                                headers: [("Location", page + query.removing("key").encoded), ("Set-Cookie", access.setCookie)])
        }
        guard access.hasCookie(request.cookie) else {
            return forbidden(request.path, "this browser has not opened the URL with the key yet.")
        }
        return await page(path: request.path, query: query)
    }

    private func forbidden(_ path: String, _ reason: String) -> HTTPResponse {
        html(403, PageLayout.message(title: "Key needed", status: 403, [
            "The dashboard reads the CA with the admin certificate, so it answers only the browser that opened the URL "
                + "`vouch ui` printed when it started (http://\(access.listen)/?key=...): " + reason,
            "Open that URL again, or restart `vouch ui` for a new one.",
        ], path: path, server: connector.serverDescription, now: clock()))
    }

    private func page(path: String, query: QueryString) async -> HTTPResponse {
        let now = clock()
        guard PageLayout.sections.contains(where: { $0.path == path }) else {
            return html(404, PageLayout.message(title: "Not found", status: 404, ["No page at this address."], path: path,
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
