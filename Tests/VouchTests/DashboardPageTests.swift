import Foundation
import GRPCCore
import VouchAPI
import VouchDashboard
import VouchHTTP
import XCTest

/// `vouch ui`'s pages and access checks in process, from a fake Admin API whose data is hostile.
final class DashboardPageTests: XCTestCase {
    static let now = Date(timeIntervalSince1970: 1_800_000_000 + 20 * 60)  // 20 min past an hour
    static let key = String(repeating: "ab", count: 32)
    static let access = DashboardAccess(key: key, listen: HostPort(host: "127.0.0.1", port: 8081))
    static let pages = ["/", "/?q=0a1b", "/?q=example&status=revoked", "/expiry", "/expiry?hours=24", "/revocations",
                        "/fleet", "/fleet?problems=1&stale=1h", "/audit"]

    func routes(_ reader: FakeAdminReader) -> DashboardRoutes {
        DashboardRoutes(access: Self.access, connector: reader, clock: { Self.now })
    }

    /// A GET of `target` below the key (`/<key>` + target), as from the browser that opened the printed URL;
    /// `keyed: false` sends `target` as is.
    static func get(_ target: String, host: String? = "127.0.0.1:8081", method: String = "GET", keyed: Bool = true) -> HTTPRequest {
        let parts = (keyed ? "/\(key)" + target : target).split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        return HTTPRequest(method: method, path: String(parts[0]), query: parts.count > 1 ? String(parts[1]) : "", host: host)
    }

    func body(_ response: HTTPResponse) -> String { String(decoding: response.body, as: UTF8.self) }

    func header(_ response: HTTPResponse, _ name: String) -> String? {
        response.headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    func testEveryPageShowsHostileDataAsTextOnly() async throws {
        let reader = FakeAdminReader(DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970)))
        var shown = Set<String>()
        for page in Self.pages {
            let response = await routes(reader).respond(Self.get(page))
            let html = body(response)
            XCTAssertEqual(response.status, 200, "\(page): \(html)")
            XCTAssertEqual(response.contentType, "text/html; charset=utf-8")
            for forbidden in ["<script", "<img", "<b ", "<iframe", "javascript:"] {
                XCTAssertFalse(html.lowercased().contains(forbidden), "\(page) contains \(forbidden)")
            }
            try assertTagsAreOurs(html, page: page)
            for hostile in DashboardHostileData.all where html.contains(HTML.escape(hostile)) { shown.insert(hostile) }
        }
        // Each hostile value did reach a page, escaped: the check above is not vacuous.
        XCTAssertEqual(shown, Set(DashboardHostileData.all))
    }

    /// Every tag's attributes are double-quoted and none is an event handler: data that got out
    /// of its text or attribute value would show up here as a tag or attribute of its own.
    func assertTagsAreOurs(_ html: String, page: String, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(Self.tagProblems(html), [], page, file: file, line: line)
    }

    static func tagProblems(_ html: String) -> [String] {
        var problems: [String] = []
        var rest = Substring(html)
        while let open = rest.firstIndex(of: "<") {
            rest = rest[rest.index(after: open)...]
            if rest.hasPrefix("!DOCTYPE") || rest.hasPrefix("/") { continue }
            let tag = rest.prefix { $0.isLetter || $0.isNumber || $0 == "-" }
            rest = rest.dropFirst(tag.count)
            while true {
                rest = rest.drop { $0 == " " }
                if rest.first == ">" { break }
                let name = rest.prefix { $0 != "=" && $0 != " " && $0 != ">" }
                rest = rest.dropFirst(name.count)
                if name.lowercased().hasPrefix("on") { problems.append("<\(tag) \(name)>") }
                guard rest.first == "=", rest.dropFirst().first == "\"" else {
                    problems.append("unquoted attribute \(name) in <\(tag)>")
                    break
                }
                rest = rest.dropFirst(2)
                guard let close = rest.firstIndex(of: "\"") else {
                    problems.append("unterminated value in <\(tag)>")
                    return problems
                }
                if rest[..<close].contains("<") || rest[..<close].contains(">") { problems.append("raw < or > in <\(tag) \(name)>") }
                rest = rest[rest.index(after: close)...]
            }
        }
        return problems
    }

    func testTheTagCheckFindsInjectedMarkup() {
        XCTAssertEqual(Self.tagProblems("<td class=\"a\">x</td><img src=x onerror=alert(1)>"),
                       ["unquoted attribute src in <img>"])
        XCTAssertEqual(Self.tagProblems("<td title=\"\" onmouseover=\"alert(1)\">"), ["<td onmouseover>"])
        XCTAssertEqual(Self.tagProblems("<svg><rect class=\"bar\" x=1></rect></svg>"), ["unquoted attribute x in <rect>"])
    }

    func testExpiryTimelineCountsEachHourFromItsFirstSecond() {
        let now: Int64 = 1_800_000_000 + 20 * 60, hour: Int64 = 1_800_000_000
        XCTAssertEqual(hour % 3600, 0)
        let timeline = ExpiryTimeline(notAfters: [now, hour + 3599, hour + 3600, hour + 2 * 3600 - 1, hour + 2 * 3600,
                                                  now + 72 * 3600, now + 72 * 3600 + 1, now - 10],
                                      now: now, hours: 72)
        XCTAssertEqual(timeline.start, hour)
        XCTAssertEqual(timeline.counts.count, 73, "the hour holding now, to the hour holding now + 72 h")
        XCTAssertEqual(Array(timeline.counts.prefix(3)), [1, 2, 1], "expired now/earlier and past the window are not counted")
        XCTAssertEqual(timeline.counts[72], 1)
        XCTAssertEqual(timeline.total, 5)
        // Now on an hour boundary: a certificate expiring this second is gone, the next hour's first second counts there.
        let aligned = ExpiryTimeline(notAfters: [hour, hour + 1, hour + 3 * 3600], now: hour, hours: 3)
        XCTAssertEqual(aligned.counts, [1, 0, 0, 1])
    }

    func testExpiryPageDrawsOneBarPerHourAndTabulatesTheSameFigures() async throws {
        let reader = FakeAdminReader(DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970)))
        let html = body(await routes(reader).respond(Self.get("/expiry?hours=48")))
        XCTAssertEqual(html.components(separatedBy: "<rect class=\"bar\"").count - 1, 49)
        XCTAssertTrue(html.contains("data-hour=\"2027-01-15T10:00:00Z\" data-count=\"1\""), html)  // now + 2 h, in the hour 10:00
        XCTAssertTrue(html.contains("<tr data-hour=\"2027-01-15T10:00:00Z\"><td class=\"mono\">2027-01-15T10:00:00Z</td><td class=\"number\">1</td></tr>"))
        XCTAssertTrue(html.contains("<tr data-hour=\"2027-01-16T14:00:00Z\">"), "now + 30 h")
        XCTAssertFalse(html.contains("2027-01-15T13:00:00Z</td>"), "the revoked certificate is not counted")
        let request = try XCTUnwrap(reader.state.withLock { $0.listRequests.last })
        XCTAssertEqual(request.status, .active)
        XCTAssertEqual(request.expiringWithinSeconds, 48 * 3600)
    }

    func testInventorySearchesBySerialIdentityAndStatus() async throws {
        let reader = FakeAdminReader(DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970)))
        let html = body(await routes(reader).respond(Self.get("/?q=0E3F")))
        XCTAssertTrue(html.contains("<tr data-serial=\"0e3f\">"), html)
        XCTAssertEqual(reader.state.withLock { $0.serialsAsked }, ["0e3f"])
        XCTAssertEqual(reader.state.withLock { $0.listRequests.last?.identity }, "*0E3F*")
        _ = await routes(reader).respond(Self.get("/?q=spiffe%3A%2F%2Fexample.org%2Fsvc%2F*&status=revoked"))
        let request = try XCTUnwrap(reader.state.withLock { $0.listRequests.last })
        XCTAssertEqual(request.identity, "spiffe://example.org/svc/*", "a glob is passed as typed")
        XCTAssertEqual(request.status, .revoked)
        XCTAssertEqual(reader.state.withLock { $0.serialsAsked.count }, 1, "not a serial: no GetCertificate")
    }

    func testTheNextPageLinkCarriesTheTokenEncoded() async throws {
        var state = DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970))
        state.nextPageToken = "\"><script>x</script>&a=b"
        let reader = FakeAdminReader(state)
        let html = body(await routes(reader).respond(Self.get("/?q=svc&status=active")))
        XCTAssertTrue(html.contains("<a class=\"next\" href=\"./?q=svc&amp;status=active&amp;page=%22%3E%3Cscript%3Ex%3C%2Fscript%3E%26a%3Db\">"), html)
        _ = await routes(reader).respond(Self.get("/?q=svc&status=active&page=%22%3E%3Cscript%3Ex%3C%2Fscript%3E%26a%3Db"))
        XCTAssertEqual(reader.state.withLock { $0.listRequests.last?.pageToken }, "\"><script>x</script>&a=b")
    }

    func testRevocationsNewestFirstAndFleetProblemsFirst() async throws {
        var state = DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970))
        var older = state.certificates[1]
        older.serial = "0c00"
        older.revokedAt -= 600
        state.certificates.insert(older, at: 0)
        let reader = FakeAdminReader(state)
        let revocations = body(await routes(reader).respond(Self.get("/revocations")))
        let newer = try XCTUnwrap(revocations.range(of: "data-serial=\"0c2d\"")), old = try XCTUnwrap(revocations.range(of: "data-serial=\"0c00\""))
        XCTAssertLessThan(newer.lowerBound, old.lowerBound)
        let fleet = body(await routes(reader).respond(Self.get("/fleet")))
        let troubled = try XCTUnwrap(fleet.range(of: "data-lineage=\"0a1b\"")), healthy = try XCTUnwrap(fleet.range(of: "data-lineage=\"0e3f\""))
        XCTAssertLessThan(troubled.lowerBound, healthy.lowerBound)
        XCTAssertTrue(fleet.contains("renewal_failing, silent"))
    }

    func testCallsTheCALacksAreExplainedAndTheTailIsStillFound() async throws {
        var state = DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970))
        state.verification = nil
        state.agentsError = RPCError(code: .unimplemented, message: "Method not found: vouch.v1.Admin/ListAgents")
        state.events = (1...2500).map { id in
            var event = Vouch_V1_AuditEvent()
            event.id = Int64(id)
            event.action = "enroll"
            return event
        }
        let reader = FakeAdminReader(state)
        let fleet = await routes(reader).respond(Self.get("/fleet"))
        XCTAssertEqual(fleet.status, 200)
        XCTAssertTrue(body(fleet).contains("The CA does not answer Admin/ListAgents"), body(fleet))
        let audit = body(await routes(reader).respond(Self.get("/audit")))
        XCTAssertTrue(audit.contains("data-state=\"unavailable\""))
        XCTAssertTrue(audit.contains("Verification unavailable"))
        XCTAssertTrue(audit.contains("<tr data-id=\"2500\">") && audit.contains("<tr data-id=\"2451\">") && !audit.contains("<tr data-id=\"2450\">"))
        XCTAssertLessThan(try XCTUnwrap(audit.range(of: "data-id=\"2500\"")).lowerBound, try XCTUnwrap(audit.range(of: "data-id=\"2451\"")).lowerBound,
                          "newest first")
        XCTAssertLessThanOrEqual(reader.state.withLock { $0.auditCalls }, 8, "the head is probed, not read page by page")
    }

    func testAnUnreachableCAGivesAPageSayingSo() async {
        var state = FakeAdminReader.State()
        state.connectError = RPCError(code: .unavailable, message: "connection refused")
        let response = await routes(FakeAdminReader(state)).respond(Self.get("/expiry"))
        XCTAssertEqual(response.status, 502)
        XCTAssertTrue(body(response).contains("The CA at 127.0.0.1:8443 did not answer this page&#39;s reads: server unavailable (connection refused)"),
                      body(response))
    }

    func testOnePageLoadIsOneConnection() async {
        let reader = FakeAdminReader(DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970)))
        for page in Self.pages { _ = await routes(reader).respond(Self.get(page)) }
        XCTAssertEqual(reader.state.withLock { $0.connections }, Self.pages.count)
    }

    func testHostHeaderMustNameTheListener() async {
        let reader = FakeAdminReader(DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970)))
        for host in ["127.0.0.1:8081", "localhost:8081", "LOCALHOST:8081"] {
            let status = await routes(reader).respond(Self.get("/", host: host)).status
            XCTAssertEqual(status, 200, host)
        }
        for host in [nil, "evil.example:8081", "evil.example", "127.0.0.1", "127.0.0.1:8082", "[::1]:8081", "127.0.0.1:8081.evil.example"] {
            let response = await routes(reader).respond(Self.get("/", host: host, method: host == "evil.example" ? "POST" : "GET"))
            XCTAssertEqual(response.status, 421, host ?? "no Host")
            XCTAssertEqual(body(response), "misdirected request: the Host header must be 127.0.0.1:8081 or localhost:8081 "
                           + "(a page on another site may not reach the dashboard through its own DNS name)\n")
        }
        XCTAssertEqual(reader.state.withLock { $0.connections }, 3, "refused requests never reach the CA")
    }

    func testPagesAreOnlyBelowTheKey() async throws {
        let reader = FakeAdminReader(DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970)))
        let routes = routes(reader)
        let key = Self.key, wrong = Self.key.dropLast() + "0"
        for target in ["/", "/expiry", "/fleet?problems=1", "/?key=\(key)", "/expiry?key=\(key)", "/\(wrong)/", "/\(key.uppercased())/",
                       "/\(key)0/", "/\(key.dropLast())/", "/\(key.dropFirst())/", "//\(key)/", "/x/\(key)/", "/%2F\(key)/", "/nowhere"] {
            let response = await routes.respond(Self.get(target, keyed: false))
            XCTAssertEqual(response.status, 403, target)
            XCTAssertTrue(body(response).contains("Open the URL `vouch ui` printed"), body(response))
            XCTAssertTrue(body(response).contains("only at the secret address `vouch ui` printed when it started (http://127.0.0.1:8081/&lt;key&gt;/)"))
            XCTAssertFalse(body(response).contains(key), "the key is never shown")
            XCTAssertTrue(body(response).contains("<link rel=\"stylesheet\" href=\"/style.css\">"), "styled from the public stylesheet")
        }
        XCTAssertEqual(reader.state.withLock { $0.connections }, 0, "no request without the key read the CA")
        let noSlash = await routes.respond(Self.get(""))
        XCTAssertEqual(noSlash.status, 404, "/<key> without the slash: relative links would leave the key")
        for (target, keyed) in [("/style.css", false), ("/icon.svg", false), ("/style.css", true), ("/icon.svg", true)] {
            let asset = await routes.respond(Self.get(target, keyed: keyed))
            XCTAssertEqual(asset.status, 200, "\(target) keyed \(keyed): nothing secret; the 403 page uses the public one")
        }
        XCTAssertEqual(reader.state.withLock { $0.connections }, 0)
    }

    /// Every link, form and stylesheet of every page, resolved as a browser does against the page's
    /// URL, stays below `/<key>/` and answers 200: navigation keeps the key in the path.
    func testEveryLinkOfEveryPageStaysBelowTheKey() async throws {
        let reader = FakeAdminReader(DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970)))
        var followed = Set<String>()
        for page in Self.pages {
            let html = body(await routes(reader).respond(Self.get(page)))
            let base = try XCTUnwrap(URL(string: "http://127.0.0.1:8081/\(Self.key)" + page))
            let targets = Self.attributeValues(html, names: ["href", "action"])
            XCTAssertGreaterThanOrEqual(targets.count, 7, "\(page): stylesheet, icon and five sections at least")
            for target in targets {
                XCTAssertFalse(target.contains(Self.key), "\(page): \(target) is relative, the page does not hold the key")
                let resolved = try XCTUnwrap(URL(string: target, relativeTo: base)?.absoluteURL, target)
                XCTAssertEqual(resolved.host, "127.0.0.1", "\(page): \(target)")
                XCTAssertTrue(resolved.path(percentEncoded: true).hasPrefix("/\(Self.key)/"), "\(page): \(target) leads to \(resolved)")
                followed.insert(String(resolved.absoluteString.dropFirst("http://127.0.0.1:8081".count)))
            }
        }
        for target in followed {
            let response = await routes(reader).respond(Self.get(target, keyed: false))
            XCTAssertEqual(response.status, 200, target)
        }
        for page in ["/", "/expiry", "/revocations", "/fleet", "/audit", "/style.css"] {
            XCTAssertTrue(followed.contains("/\(Self.key)" + page), "\(page) is linked")
        }
    }

    /// The values of the named attributes, unescaped as a browser reads them.
    static func attributeValues(_ html: String, names: [String]) -> [String] {
        names.flatMap { name in
            html.components(separatedBy: " \(name)=\"").dropFirst().map { part in
                String(part.prefix { $0 != "\"" }).replacingOccurrences(of: "&amp;", with: "&")
            }
        }
    }

    /// A browser sends cookies to every port of 127.0.0.1, so a cookie holding the key would reach any
    /// local web server the operator visits. No response sets one, and none carries the key in a header.
    func testNoResponseSetsACookieOrCarriesTheKeyInAHeader() async {
        var down = FakeAdminReader.State()
        down.connectError = RPCError(code: .unavailable, message: "down")
        let up = FakeAdminReader(DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970)))
        let requests = Self.pages.map { Self.get($0) } + [
            Self.get(""), Self.get("/nowhere"), Self.get("/style.css"), Self.get("/", keyed: false), Self.get("/?key=\(Self.key)", keyed: false),
            Self.get("/expiry?key=\(Self.key)", keyed: false), Self.get("/style.css", keyed: false), Self.get("/", host: "evil.example"),
            Self.get("/", method: "POST"),
        ]
        var statuses = Set<Int>()
        for routes in [routes(up), routes(FakeAdminReader(down))] {
            for request in requests {
                let response = await routes.respond(request)
                statuses.insert(response.status)
                XCTAssertNil(header(response, "Set-Cookie"), "\(request.path)?\(request.query)")
                for (name, value) in response.headers {
                    XCTAssertFalse(value.contains(Self.key), "\(request.path): \(name)")
                }
            }
        }
        XCTAssertEqual(statuses, [200, 403, 404, 405, 421, 502])
    }

    func testOnlyGETIsAnswered() async {
        let reader = FakeAdminReader(DashboardHostileData.fakeState(now: Int64(Self.now.timeIntervalSince1970)))
        for method in ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
            let response = await routes(reader).respond(Self.get("/", method: method))
            XCTAssertEqual(response.status, 405, method)
            XCTAssertEqual(header(response, "Allow"), "GET")
            XCTAssertEqual(body(response), "method not allowed: the dashboard is read-only (GET only)\n")
        }
        XCTAssertEqual(reader.state.withLock { $0.connections }, 0)
    }

    func testEveryResponseCarriesTheSecurityHeaders() async {
        var state = FakeAdminReader.State()
        state.connectError = RPCError(code: .unavailable, message: "down")
        let routes = routes(FakeAdminReader(state))
        for request in [Self.get("/"), Self.get("/", keyed: false), Self.get("/", host: "evil.example"), Self.get("/", method: "POST"),
                        Self.get("/style.css"), Self.get("/nowhere"), Self.get("/?key=\(Self.key)", keyed: false)] {
            let response = await routes.respond(request)
            XCTAssertEqual(header(response, "Content-Security-Policy"),
                           "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
            XCTAssertEqual(header(response, "X-Content-Type-Options"), "nosniff")
            XCTAssertEqual(header(response, "Referrer-Policy"), "no-referrer")
            XCTAssertEqual(header(response, "Cache-Control"), "no-store")
        }
    }

    func testListenMustBeLoopback() throws {
        for address in ["0.0.0.0:8081", "192.168.1.10:8081", "[::]:8081", "example.org:8081", "[::ffff:127.0.0.1]:8081", ":8081"] {
            let parsed = try XCTUnwrap(HostPort(address), address)
            XCTAssertThrowsError(try DashboardAccess.loopbackListen(parsed), address) { error in
                XCTAssertEqual("\(error)", "--listen \(parsed) is not a loopback address: the dashboard reads the CA with the admin "
                               + "certificate, so it listens on 127.0.0.1, [::1] or localhost only")
            }
        }
        XCTAssertEqual(try DashboardAccess.loopbackListen(XCTUnwrap(HostPort("127.0.0.1:0"))), HostPort(host: "127.0.0.1", port: 0))
        XCTAssertEqual(try DashboardAccess.loopbackListen(XCTUnwrap(HostPort("127.3.2.1:8081"))), HostPort(host: "127.3.2.1", port: 8081))
        XCTAssertEqual(try DashboardAccess.loopbackListen(XCTUnwrap(HostPort("localhost:8081"))), HostPort(host: "127.0.0.1", port: 8081))
        XCTAssertEqual(try DashboardAccess.loopbackListen(XCTUnwrap(HostPort("[0:0::1]:8081"))), HostPort(host: "::1", port: 8081))
    }

    func testTheKeyIsRandomAndLong() {
        let keys = Set((0..<100).map { _ in DashboardAccess.randomKey() })
        XCTAssertEqual(keys.count, 100)
        XCTAssertTrue(keys.allSatisfy { $0.count == 64 && $0.allSatisfy(\.isHexDigit) })
    }
}
