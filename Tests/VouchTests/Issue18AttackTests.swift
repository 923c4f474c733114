import Foundation
import GRPCCore
import Synchronization
import VouchAPI
@testable import VouchAgent
@testable import VouchAuthority
import VouchCrypto
@testable import VouchDashboard
@testable import vouch
import VouchHTTP
import VouchSQLiteStore
import XCTest

/// The fleet view, `vouch fleet list` and `vouch ui` against a hostile caller: an agent
/// certificate that floods ReportAgent, and a CA (or whoever writes its database) whose answers
/// carry terminal escapes, endless page tokens or out-of-range row ids.
final class Issue18AttackTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    // MARK: ReportAgent from one agent certificate

    /// Concurrent changed reports from one certificate: the 10-writes-per-10-s bound holds for
    /// calls in flight together, not only for calls one after another.
    func testConcurrentChangedReportsFromOneCertificateWriteAtMostTen() async throws {
        let clock = TestClock()
        let store = try SQLiteAuthorityStore(path: try temporaryDirectory() + "/vouch.db")
        let authority = CertificateAuthority(store: store, material: try TestCA.material(now: clock.now),
                                             policy: IssuancePolicy(trustDomain: "example.org"), clock: { clock.now })
        let token = try await authority.createToken(spiffeID: Self.web, dnsNames: [], ipAddresses: [], ttlSeconds: 900, uses: 1,
                                                    caller: AuthorityHarness.admin).token.text
        let csr = try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der
        let issued = try await authority.enroll(token: token, csr: csr, ttlSeconds: 0, caller: Caller(credential: .none, peer: "ipv4:10.0.0.1:1"))
        let caller = AuthorityHarness.caller(issued.record)

        let outcomes = await withTaskGroup(of: AuthorityError.Kind?.self) { group in
            for failures in 1...40 {
                group.addTask {
                    let report = AgentReportRecord(servingSerial: issued.record.serial, failures: Int64(failures), hostName: "web-1")
                    return await refusal { try await authority.recordAgentReport(caller: caller, report: report) }
                }
            }
            var all: [AuthorityError.Kind?] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        XCTAssertEqual(outcomes.filter { $0 == nil }.count, 10, "written: \(outcomes)")
        XCTAssertEqual(outcomes.filter { $0 == .resourceExhausted }.count, 30, "\(outcomes)")
    }

    // MARK: The Workload API socket

    /// One connection to the Workload API cannot open streams without end (each holds a task and
    /// a watcher in the agent): the server's HTTP/2 SETTINGS name a bound, as the CA's listener does.
    func testWorkloadAPIAdvertisesABoundOnConcurrentStreams() async throws {
        let harness = try await KeeperHarness()
        let directory = try shortSocketDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let workload = WorkloadAPI(configuration: WorkloadAPIConfiguration(socketPath: directory + "/agent.sock"), files: harness.files,
                                   clock: harness.clock, logger: harness.log.logger)
        let server = try await XCTUnwrapAsync(try await workload.start(limits: harness.configuration.listenerLimits))
        defer { server.stop() }
        let settings = try Self.serverSettings(socket: directory + "/agent.sock")
        let streams = try XCTUnwrap(settings[3], "SETTINGS_MAX_CONCURRENT_STREAMS in \(settings)")
        XCTAssertLessThanOrEqual(streams, 100)
    }

    /// `unix:///tmp/…`: any user could bind that path while the agent is down and serve workloads a
    /// forged identity (and the agent would then refuse to start). Refused in one line before binding;
    /// a missing directory of the agent's own is created 0755 and logged.
    func testWorkloadAPIInADirectoryOthersCanWriteIsRefusedAndAMissingOneCreated() throws {
        let directory = try shortSocketDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // No CA is reached: the socket is checked before the token is read.
        let agent = ["agent", "--ca", "127.0.0.1:1", "--ca-bundle", directory + "/bundle.pem", "--out", directory + "/out",
                     "--token-file", directory + "/none", "--workload-api"]
        let socket = "/tmp/vouch-\(getpid())-agent.sock"
        let refused = try vouch(agent + ["unix://" + socket], environment: [:])
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.stderr, "vouch: cannot serve the Workload API on \(socket): /tmp is writable by other users, who could serve "
            + "workloads a forged identity there while the agent is down; use a directory only the agent's user can write, e.g. /run/vouch\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket))

        let created = try vouch(agent + ["unix://\(directory)/api/agent.sock"], environment: [:])
        XCTAssertTrue(created.stderr.contains("directory=\(directory)/api mode=755 [VouchAgent] workload API: created the socket's directory"),
                      created.stderr)
        XCTAssertTrue(created.stderr.hasSuffix("vouch: cannot read a token from \(directory)/none\n"), "served, then stopped: \(created.stderr)")
        var info = stat()
        XCTAssertEqual(lstat(directory + "/api", &info), 0)
        XCTAssertEqual(info.st_mode & 0o7777, 0o755, "under the agent's umask 077")
    }

    /// The parameters of the first SETTINGS frame the HTTP/2 server at `socket` sends.
    static func serverSettings(socket path: String) throws -> [UInt16: UInt32] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8.prefix($0.count - 1)) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw CLIFailure("connect: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let hello = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0]
        guard write(fd, hello, hello.count) == hello.count else { throw CLIFailure("write: \(String(cString: strerror(errno)))") }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if received.count >= 9 {
                let length = Int(received[0]) << 16 | Int(received[1]) << 8 | Int(received[2])
                if received.count >= 9 + length {
                    guard received[3] == 4 else { throw CLIFailure("first frame of type \(received[3]), not SETTINGS") }
                    var settings: [UInt16: UInt32] = [:]
                    for offset in stride(from: 9, to: 9 + length, by: 6) {
                        let id = UInt16(received[offset]) << 8 | UInt16(received[offset + 1])
                        settings[id] = received[(offset + 2)..<(offset + 6)].reduce(0) { $0 << 8 | UInt32($1) }
                    }
                    return settings
                }
            }
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else { throw CLIFailure("read: \(count == 0 ? "closed" : String(cString: strerror(errno)))") }
            received += buffer.prefix(count)
        }
    }

    // MARK: vouch fleet list and a hostile database

    /// Whoever can write the CA's database plants terminal escapes in an agent's row: the table
    /// shows them as `\u{…}` text, so they cannot retitle, clear or recolour the operator's terminal.
    func testFleetListTableShowsControlCharactersAsText() async throws {
        let ca = try CAFixture()
        let key = try PrivateKey(generating: .p256)
        let enrolled = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: key)
        try await SQLiteAuthorityStore(path: ca.caDir + "/vouch.db").recordAgentReport(
            AgentReportRecord(servingSerial: enrolled.serial, agentVersion: "1.0\u{9B}31m", hostName: "web\u{1B}]0;owned\u{7}\u{1B}[2J"),
            callerSerial: enrolled.serial, spiffeID: Self.web + "\u{202E}gpj.exe", peer: "127.0.0.1:1", at: Date())

        let table = try vouch("fleet", "list", "--dir", ca.caDir, "--server", ca.server.address)
        XCTAssertEqual(table.status, 0, table.stderr)
        let hidden = table.stdout.unicodeScalars.filter { $0 != "\n" && Self.isControlOrFormat($0) }
        XCTAssertEqual(hidden.map { String($0.value, radix: 16) }, [], table.stdout.debugDescription)
        XCTAssertTrue(table.stdout.contains(#"web\u{1B}]0;owned\u{7}\u{1B}[2J"#), table.stdout.debugDescription)
        XCTAssertTrue(table.stdout.contains(#"1.0\u{9B}31m"#), table.stdout.debugDescription)
        XCTAssertTrue(table.stdout.contains(Self.web + #"\u{202E}gpj.exe"#), table.stdout.debugDescription)
    }

    /// The CLI's one-line error shows control characters as text too: the message may quote what
    /// a hostile CA sent (an RPC status message) or a name as typed.
    func testCLIErrorsShowControlCharactersAsText() throws {
        let result = try vouch("fleet", "list", "--dir", "/nonexistent/\u{1B}]0;owned\u{7}\u{1B}[2J")
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.stderr.unicodeScalars.filter { Self.isControlOrFormat($0) }.map { String($0.value, radix: 16) }, ["a"],
                       result.stderr.debugDescription)
        XCTAssertTrue(result.stderr.contains(#"/nonexistent/\u{1B}]0;owned\u{7}\u{1B}[2J"#), result.stderr.debugDescription)
    }

    static func isControlOrFormat(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }

    /// An agent may report any non-negative time (last_rotation, last_error_at, serving_not_after),
    /// a hostile CA any time at all: each is printed, not a crash of `vouch fleet list --json` or a page.
    func testTimesAtTheEndsOfInt64AreFormatted() {
        for seconds in [Int64.max, Int64.max / 2, 1 << 53, 253_402_300_800, -1, Int64.min] {
            XCTAssertFalse(iso8601(seconds).isEmpty, "\(seconds)")
            XCTAssertFalse(DashboardTime.text(seconds).isEmpty, "\(seconds)")
        }
    }

    // MARK: vouch ui and a hostile CA

    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let key = String(repeating: "cd", count: 32)

    func page(_ target: String, _ reader: HostileAdminReader) async -> (status: Int, html: String) {
        let routes = DashboardRoutes(access: DashboardAccess(key: Self.key, listen: HostPort(host: "127.0.0.1", port: 8081)),
                                     connector: reader, clock: { Self.now })
        let parts = target.split(separator: "?", maxSplits: 1)
        let response = await routes.respond(HTTPRequest(method: "GET", path: "/\(Self.key)" + parts[0],
                                                        query: parts.count > 1 ? String(parts[1]) : "", host: "127.0.0.1:8081"))
        return (response.status, String(decoding: response.body, as: UTF8.self))
    }

    /// A CA answering every list with an empty page and another page token: each page load
    /// stops after the first empty page instead of asking for ever.
    func testEndlessEmptyPagesEndThePageLoad() async throws {
        for path in ["/fleet", "/revocations", "/expiry"] {
            let reader = HostileAdminReader(endlessPages: true)
            let (status, html) = await page(path, reader)
            XCTAssertEqual(status, 200, "\(path): \(html)")
            XCTAssertEqual(reader.calls, 1, "\(path): one empty page, then no more")
        }
    }

    /// Row ids no CA hands out (negative, or next to Int64.max) cannot crash `vouch ui`: the audit
    /// page shows what it got.
    func testAuditRowIdsAtTheEndsOfInt64DoNotCrashTheDashboard() async throws {
        for head in [Int64.min, -1, Int64.max] {
            var verification = Vouch_V1_AuditLogVerification()
            verification.intact = true
            verification.headRowID = head
            let (status, html) = await page("/audit", HostileAdminReader(verification: verification))
            XCTAssertEqual(status, 200, "head \(head): \(html)")
        }
        // Without VerifyAuditLog the page finds the head itself, probing past the ids it is given.
        for last in [Int64.max, Int64.max - 500, Int64.min + 1, 5] {
            let reader = HostileAdminReader(fullPagesEndingAt: last)
            let (status, html) = await page("/audit", reader)
            XCTAssertEqual(status, 200, "last id \(last): \(html)")
            XCTAssertLessThan(reader.calls, 200, "last id \(last)")
        }
    }
}

/// An Admin API that answers as no Vouch CA does.
final class HostileAdminReader: AdminReader, AdminConnector, Sendable {
    let endlessPages: Bool
    let verification: Vouch_V1_AuditLogVerification?
    /// Every audit read returns a full page of 1000 events, the last with this id.
    let fullPagesEndingAt: Int64?
    private let count = Mutex(0)

    init(endlessPages: Bool = false, verification: Vouch_V1_AuditLogVerification? = nil, fullPagesEndingAt: Int64? = nil) {
        self.endlessPages = endlessPages
        self.verification = verification
        self.fullPagesEndingAt = fullPagesEndingAt
    }

    var calls: Int { count.withLock { $0 } }
    var serverDescription: String { "127.0.0.1:8443" }

    func withReader<Result: Sendable>(_ body: (any AdminReader) async throws -> Result) async throws -> Result { try await body(self) }

    /// Counts a call; past 10,000 the test has seen enough (a loop that would not end).
    private func called() throws {
        let calls = count.withLock { $0 += 1; return $0 }
        if calls > 10_000 { throw RPCError(code: .resourceExhausted, message: "the dashboard asked \(calls) times") }
    }

    func listCertificates(_ request: Vouch_V1_ListCertificatesRequest) async throws -> Vouch_V1_ListCertificatesResponse {
        try called()
        var response = Vouch_V1_ListCertificatesResponse()
        if endlessPages { response.nextPageToken = "again" }
        return response
    }

    func certificate(serial: String) async throws -> Vouch_V1_CertificateInfo {
        throw RPCError(code: .notFound, message: "no certificate")
    }

    func auditEvents(after id: Int64, limit: Int32) async throws -> [Vouch_V1_AuditEvent] {
        try called()
        guard let last = fullPagesEndingAt else { return [] }
        return (0..<Int64(limit)).map { index in
            var event = Vouch_V1_AuditEvent()
            event.id = last &- (Int64(limit) - 1 - index)
            event.actor = "spiffe://example.org/vouch/admin"
            return event
        }
    }

    func verifyAuditLog() async throws -> Vouch_V1_AuditLogVerification {
        guard let verification else { throw RPCError(code: .unimplemented, message: "Method not found") }
        return verification
    }

    func listAgents(_ request: Vouch_V1_ListAgentsRequest) async throws -> Vouch_V1_ListAgentsResponse {
        try called()
        var response = Vouch_V1_ListAgentsResponse()
        if endlessPages { response.nextPageToken = "1 0a spiffe://example.org/again" }
        return response
    }
}
