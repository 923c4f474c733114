import Foundation
import VouchAPI
import VouchCrypto
import XCTest

/// `vouch ui` in a real browser: headless Chromium, driven by Tests/browser/dashboard_check.py,
/// reads every page of the real dashboard over the real CA and compares the figures with the CLI;
/// names the CA would never issue, planted in its database, are shown as text and never run.
final class DashboardBrowserTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let hostileSPIFFEID = "spiffe://example.org/<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>"
    static let hostileDNSName = "'\"><img src=x onerror=window.pwned=3>&amp;"
    static let hostileHostName = "<script>window.pwned=4</script>host'\"&"

    func testEveryPageMatchesTheCLIAndShowsHostileNamesAsText() async throws {
        let python = Self.repository + "/.build/python-venv/bin/python"
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return XCTFail("no \(tool): run scripts/install-deps.sh (scripts/test.sh does)")
        }
        guard FileManager.default.isExecutableFile(atPath: python),
              try execute(python, ["-c", "import selenium"]).status == 0 else {
            return XCTFail("no Python venv with selenium: run scripts/setup-python.sh (scripts/test.sh does)")
        }
        let ca = try CAFixture()
        // Certificates expiring over the next three days, two of them revoked, and one real agent.
        var issued: [String] = []
        for (name, hours) in [("svc/web", 2), ("svc/web", 2), ("svc/api", 5), ("batch/report", 26), ("svc/db", 50), ("edge/proxy", 71),
                              ("svc/cache", 80)] {
            let token = try ca.createToken(spiffeID: "spiffe://example.org/\(name)", dns: ["\(name.split(separator: "/")[1]).example.org"])
            issued.append(try await ca.enroll(token: token, key: PrivateKey(generating: .p256),
                                              names: SubjectAltNames(dnsNames: ["\(name.split(separator: "/")[1]).example.org"]),
                                              ttl: Int64(hours) * 3600).serial)
        }
        _ = try await ca.revoke(issued[1], reason: 1, as: ca.admin)
        _ = try await ca.revoke(issued[2], reason: 4, as: ca.admin)
        let (agent, _) = try ca.startAgent(spiffeID: "spiffe://example.org/svc/agent", ttl: "24h")
        defer { agent.stop() }

        // The CA refuses such names at issuance: plant them in its database.
        let hostile = issued[3]
        let planted = try execute("/usr/bin/sqlite3", [ca.caDir + "/vouch.db",
            "UPDATE certificate SET spiffe_id = '\(Self.sql(Self.hostileSPIFFEID))', dns_names = '\(Self.sql(Self.hostileDNSName))' WHERE serial = '\(hostile)'"])
        XCTAssertEqual(planted.status, 0, planted.stderr)

        // Free text an agent reports: the genuine path for markup into the page.
        try await Self.reportHostileAgent(ca, name: "svc/report-hostile")
        XCTAssertTrue(eventually(timeout: 10) {
            (try? vouch("fleet", "list", "--dir", ca.caDir, "--server", ca.server.address, "--json"))?.stdout.contains("svc/agent") ?? false
        }, "the agent reports to the CA")

        let ui = try UIProcess(["--dir", ca.caDir, "--server", ca.server.address, "--listen", "127.0.0.1:0"])
        defer { ui.stop() }
        var environment: [String: String] = [:]
        if let directory = ProcessInfo.processInfo.environment["VOUCH_SCREENSHOT_DIR"] {
            environment["VOUCH_SCREENSHOT_DIR"] = directory.hasPrefix("/") ? directory : Self.repository + "/" + directory
        }
        let check = try execute(python, [Self.repository + "/Tests/browser/dashboard_check.py", "--url", ui.url,
                                         "--vouch", VouchBinary.path, "--dir", ca.caDir, "--server", ca.server.address,
                                         "--hostile-serial", hostile, "--hostile-spiffe", Self.hostileSPIFFEID,
                                         "--hostile-dns", Self.hostileDNSName,
                                         "--audit-state", "intact", "--screenshots", Self.repository + "/.build/screenshots"],
                                environment: environment)
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        // 7 enrolled here (80 h is past the window, 2 revoked), the agent's (24 h), the hostile reporter's (24 h), and
        // the CA's own: admin (1 year), server (24 h) and the server's first (1 year).
        XCTAssertTrue(check.stdout.contains("dashboard check: 0 failures; 12 certificates, 2 revoked, 7 expiring within 72 h, 2 agents"),
                      check.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: Self.repository + "/.build/screenshots/dashboard.png"))
        XCTAssertEqual(ui.output.components(separatedBy: ui.key).count - 1, 1, "the key is printed once, never logged: \(ui.output)")

        // The admin certificate renewed in place and the old one revoked: the next page load uses the new one.
        let admin = "spiffe://example.org/vouch/admin"
        let old = try XCTUnwrap(Self.serials(ca, identity: admin).first)
        for file in ["admin.pem", "admin_key.pem"] { try FileManager.default.copyItem(atPath: ca.caDir + "/" + file, toPath: ca.root + "/old-" + file) }
        XCTAssertEqual(try vouch("ca", "admin-cert", "--dir", ca.caDir, "--spiffe-id", admin, "--out", ca.caDir).status, 0)
        XCTAssertEqual(try vouch("cert", "revoke", old, "--dir", ca.caDir, "--server", ca.server.address).status, 0)
        XCTAssertNotEqual(try vouch("cert", "list", "--dir", ca.caDir, "--server", ca.server.address,
                                    "--cert", ca.root + "/old-admin.pem", "--key", ca.root + "/old-admin_key.pem").status, 0,
                          "the CA refuses the old admin certificate")
        let page = try execute("/usr/bin/curl", ["-s", ui.url + "?q=\(old)"])
        XCTAssertTrue(page.stdout.contains("<tr data-serial=\"\(old)\">") && page.stdout.contains("status-revoked"), page.stdout)
    }

    static func serials(_ ca: CAFixture, identity: String) throws -> [String] {
        let listed = try vouch("cert", "list", "--dir", ca.caDir, "--server", ca.server.address, "--identity", identity, "--json")
        let certificates = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]] ?? []
        return certificates.compactMap { $0["serial"] as? String }
    }

    func testRefusalsOverHTTP() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        XCTAssertEqual(try vouch("ca", "init", "--dir", root + "/ca", "--trust-domain", "example.org").status, 0)
        let exposed = try vouch("ui", "--dir", root + "/ca", "--listen", "0.0.0.0:0")
        XCTAssertEqual(exposed.status, 1)
        XCTAssertEqual(exposed.stderr, "vouch: --listen 0.0.0.0:0 is not a loopback address: the dashboard reads the CA with the admin "
                       + "certificate, so it listens on 127.0.0.1, [::1] or localhost only\n")

        // No CA listens at port 1: refusals come first, and a page says the CA did not answer.
        let ui = try UIProcess(["--dir", root + "/ca", "--server", "127.0.0.1:1", "--listen", "127.0.0.1:0"])
        defer { XCTAssertEqual(ui.stop(), 0, "graceful exit on SIGTERM") }
        let base = "http://127.0.0.1:\(ui.port)"
        func curl(_ arguments: String...) throws -> String {
            try execute("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}"] + arguments).stdout
        }
        XCTAssertEqual(try curl("-H", "Host: attacker.example:\(ui.port)", base + "/"), "421", "DNS rebinding")
        XCTAssertEqual(try curl(base + "/"), "403", "no key")
        XCTAssertEqual(try curl(base + "/?key=\(ui.key)"), "403", "the key in a query is not a way in")
        XCTAssertEqual(try curl(base + "/00/"), "403", "wrong key")
        XCTAssertEqual(try curl("-X", "POST", ui.url), "405")
        XCTAssertEqual(try curl("-H", "Host: localhost:\(ui.port)", ui.url + "expiry"), "502", "CA unreachable")
        let page = try execute("/usr/bin/curl", ["-s", "-i", ui.url]).stdout
        XCTAssertTrue(page.contains("The CA at 127.0.0.1:1 did not answer this page&#39;s reads: server unavailable"), page)
        XCTAssertFalse(page.lowercased().contains("set-cookie"), page)
        XCTAssertTrue(page.contains("Content-Security-Policy: default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                    + "frame-ancestors 'none'; base-uri 'none'\r\n"), page)
    }

    static func sql(_ text: String) -> String { text.replacingOccurrences(of: "'", with: "''") }

    /// An enrolled workload that reports a hostile host name and renewal error.
    static func reportHostileAgent(_ ca: CAFixture, name: String) async throws {
        let key = try PrivateKey(generating: .p256)
        let response = try await ca.enroll(token: ca.createToken(spiffeID: "spiffe://example.org/\(name)"), key: key)
        let credentials = try ca.writeIdentity(response, key: key, name: "hostile-agent")
        var report = Vouch_V1_AgentReport()
        report.servingSerial = response.serial
        report.servingNotAfter = response.notAfter
        report.hostName = hostileHostName
        report.agentVersion = "1.0 <b>"
        report.lastError = "<img src=x onerror=window.pwned=5> renewal refused"
        report.lastErrorAt = Int64(Date().timeIntervalSince1970)
        _ = try await ca.ca(credentials) { try await $0.reportAgent(report, options: VouchClient.options()) }
    }
}

/// A `vouch ui` child process; its start URL (with the key) read from its output.
final class UIProcess: @unchecked Sendable {
    let process = Process()
    let collector = OutputCollector()
    private let exit: ProcessExit
    private(set) var url = ""

    init(_ arguments: [String]) throws {
        exit = ProcessExit(process)
        process.executableURL = URL(fileURLWithPath: VouchBinary.path)
        process.arguments = ["ui"] + arguments
        try process.runLongLived(output: collector)
        let prefix = "vouch ui on "
        func announced(_ text: String) -> String? {
            text.split(separator: "\n").first { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
        }
        guard collector.wait(timeout: 30, until: { announced($0) != nil }), let url = announced(collector.text) else {
            process.terminate()
            throw CLIFailure("vouch ui did not start: \(collector.text)")
        }
        self.url = url
    }

    var output: String { collector.text }
    /// The printed URL is http://127.0.0.1:PORT/<key>/.
    var key: String { String(url.split(separator: "/").last ?? "") }
    var port: Int { Int(url.split(separator: ":")[2].prefix { $0.isNumber }) ?? 0 }

    @discardableResult
    func stop() -> Int32 {
        let status = terminate(process, exit: exit)
        collector.waitUntilDrained()
        return status
    }

    deinit { if process.isRunning { process.terminate() } }
}
