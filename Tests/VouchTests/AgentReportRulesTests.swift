import Foundation
@testable import VouchAuthority
import XCTest

/// ReportAgent's rules in the authority core, on an in-memory store and a hand-moved clock: who
/// may report, what a report may say, that a refused report stores nothing, that identical
/// repeats cost no write, and that ListAgents follows an agent across renewals.
final class AgentReportRulesTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    /// A harness with one enrolled web agent.
    func enrolledAgent() async throws -> (AuthorityHarness, CertificateRecord, Caller) {
        let harness = try AuthorityHarness { $0.adminIDs.insert("spiffe://example.org/ops/alice") }
        let (record, caller, _) = try await harness.enroll(try await harness.token(Self.web))
        return (harness, record, caller)
    }

    func report(_ serving: String, _ change: (inout AgentReportRecord) -> Void = { _ in }) -> AgentReportRecord {
        var report = AgentReportRecord(servingSerial: serving, servingNotAfter: 1_800_003_600, trustGeneration: 1,
                                       bundleSHA256: Array(repeating: 7, count: 32), rootSerials: [], agentVersion: "vouch 1.0",
                                       hostName: "web-1")
        change(&report)
        return report
    }

    /// The refusal `body` throws, as the client reads it.
    func refusal(_ body: () async throws -> Void) async -> AuthorityError? {
        do {
            try await body()
            return nil
        } catch {
            return error as? AuthorityError
        }
    }

    func testAReportIsListedUnderTheEnrollmentSerialAcrossRenewals() async throws {
        let (harness, enrolled, caller) = try await enrolledAgent()
        try await harness.authority.recordAgentReport(caller: caller, report: report(enrolled.serial))
        let firstSeen = harness.clock.now
        harness.clock.advance(30)
        let (renewed, renewedCaller) = try await harness.renew(caller)
        try await harness.authority.recordAgentReport(caller: renewedCaller, report: report(renewed.serial) { $0.rotations = 1 })

        let (agents, next) = try await harness.authority.listAgents(staleAfter: 600, problemsOnly: false, limit: 100, after: nil)
        XCTAssertNil(next)
        XCTAssertEqual(agents.count, 1, "one agent, not one per certificate")
        let agent = try XCTUnwrap(agents.first)
        XCTAssertEqual(agent.row.lineage, enrolled.serial)
        XCTAssertEqual(agent.row.callerSerial, renewed.serial)
        XCTAssertEqual(agent.row.report.servingSerial, renewed.serial)
        XCTAssertEqual(agent.row.report.rotations, 1)
        XCTAssertEqual(agent.row.firstSeen, firstSeen)
        XCTAssertEqual(agent.row.reportedAt, harness.clock.now)
        XCTAssertEqual(agent.row.peer, "ipv4:10.0.0.1:5000")
        XCTAssertEqual(agent.problems, [])
        let audit = try await harness.authority.auditEvents(afterID: 0, limit: 100).map(\.entry.action)
        XCTAssertFalse(audit.contains { $0.contains("gent") }, "a report is no decision: not audited (\(audit))")
    }

    /// The pages of one listing are cut from one judgement: agents that turn silent between two
    /// pages (problems first would move them ahead of the token) are neither skipped nor repeated,
    /// and a fresh listing sees them silent.
    func testThePagesOfOneListingAreJudgedOnce() async throws {
        let harness = try AuthorityHarness()
        var lineages: [String] = []
        for name in ["a", "b", "c"] {
            let (record, caller, _) = try await harness.enroll(try await harness.token("spiffe://example.org/svc/\(name)"))
            try await harness.authority.recordAgentReport(caller: caller, report: report(record.serial))
            lineages.append(record.serial)
        }
        var walked: [String] = []
        var cursor: AgentListCursor?
        repeat {
            let page = try await harness.authority.listAgents(staleAfter: 60, problemsOnly: false, limit: 1, after: cursor)
            walked += page.agents.map(\.row.lineage)
            XCTAssertEqual(page.agents.flatMap(\.problems), [], "judged when the listing began")
            cursor = try page.next.map { try XCTUnwrap(AgentListCursor(token: $0.token)) }
            harness.clock.advance(61)  // every agent silent from now on
        } while cursor != nil
        XCTAssertEqual(walked.sorted(), lineages.sorted(), "each agent once")

        let fresh = try await harness.authority.listAgents(staleAfter: 60, problemsOnly: false, limit: 10, after: nil)
        XCTAssertEqual(fresh.agents.map(\.problems), [[.silent], [.silent], [.silent]])
        // A token from a listing older than its lifetime is refused rather than judged anew.
        let stale = AgentListCursor(judgedAt: harness.clock.now.addingTimeInterval(-601), position: fresh.agents[0].position)
        let error = await refusal { _ = try await harness.authority.listAgents(staleAfter: 60, problemsOnly: false, limit: 1, after: stale) }
        XCTAssertEqual(error?.kind, .invalidArgument)
    }

    func testTheCAsOwnAndAdminIdentitiesCannotReportAsAgents() async throws {
        let (harness, _, _) = try await enrolledAgent()
        for spiffeID in ["spiffe://example.org/vouch/admin", "spiffe://example.org/vouch/server", "spiffe://example.org/vouch/anything",
                         "spiffe://example.org/ops/alice"] {
            let caller = Caller(credential: .certificate(spiffeID: spiffeID, serial: "01"), peer: "ipv4:10.0.0.9:1")
            let error = await refusal { try await harness.authority.recordAgentReport(caller: caller, report: self.report("01")) }
            XCTAssertEqual(error, AuthorityError(.permissionDenied,
                                                 "\(spiffeID) is an identity of the CA or its admins, not an agent's; it does not report as an agent"))
        }
        let anonymous = await refusal {
            try await harness.authority.recordAgentReport(caller: Caller(credential: .none, peer: "x"), report: self.report("01"))
        }
        XCTAssertEqual(anonymous, AuthorityError(.unauthenticated, "ReportAgent needs a client certificate"))
        let read1 = try await harness.store.agentReports()
        XCTAssertEqual(read1, [])
    }

    func testTheServedCertificateMustBeTheCallersOrOneOfItsIdentity() async throws {
        let (harness, enrolled, caller) = try await enrolledAgent()
        let (other, _, _) = try await harness.enroll(try await harness.token("spiffe://example.org/svc/db"))
        let (sibling, _, _) = try await harness.enroll(try await harness.token(Self.web))
        for serving in [other.serial, "ffffffff"] {
            let error = await refusal { try await harness.authority.recordAgentReport(caller: caller, report: self.report(serving)) }
            XCTAssertEqual(error, AuthorityError(.invalidArgument, "serving_serial \(serving) is not a certificate of \(Self.web)"))
        }
        let read2 = try await harness.store.agentReports()
        XCTAssertEqual(read2, [], "nothing stored")
        // Another certificate of the same identity (an old one still served, a sibling host's) is accepted.
        try await harness.authority.recordAgentReport(caller: caller, report: report(sibling.serial))
        let read3 = try await harness.store.agentReports().map(\.lineage)
        XCTAssertEqual(read3, [enrolled.serial])
    }

    func testOutOfBoundsReportsAreRefusedNamingTheFieldAndStoreNothing() async throws {
        let (harness, enrolled, caller) = try await enrolledAgent()
        let s = enrolled.serial
        let cases: [(String, (inout AgentReportRecord) -> Void, String)] = [
            ("host name of 254 bytes", { $0.hostName = String(repeating: "h", count: 254) }, "host_name is 254 bytes; at most 253"),
            ("host name of 127 two-byte characters", { $0.hostName = String(repeating: "é", count: 127) }, "host_name is 254 bytes; at most 253"),
            ("host name with a newline", { $0.hostName = "web\n1" }, #"host_name "web\n1" holds a control character"#),
            ("host name with an escape", { $0.hostName = "web\u{1b}[2J" }, #"host_name "web\u{1B}[2J" holds a control character"#),
            ("agent version of 65 bytes", { $0.agentVersion = String(repeating: "v", count: 65) }, "agent_version is 65 bytes; at most 64"),
            ("host name with a right-to-left override", { $0.hostName = "web\u{202E}1" }, #"host_name "web\u{202E}1" holds a control character"#),
            ("host name with a zero-width space", { $0.hostName = "web\u{200B}1" }, #"host_name "web\u{200B}1" holds a control character"#),
            ("host name with a line separator", { $0.hostName = "web\u{2028}1" }, #"host_name "web\u{2028}1" holds a control character"#),
            ("agent version with a DEL", { $0.agentVersion = "1\u{7f}" }, #"agent_version "1\u{7F}" holds a control character"#),
            ("17 roots", { $0.rootSerials = (1...17).map { String(format: "%02x", $0) } }, "root_serials lists 17 roots; at most 16"),
            ("a root serial of 41 digits", { $0.rootSerials = [String(repeating: "a", count: 41)] },
             "root_serials: \"\(String(repeating: "a", count: 41))\" is not a serial (1 to 40 hex digits)"),
            ("a root serial that is not hex", { $0.rootSerials = ["0g"] }, #"root_serials: "0g" is not a serial (1 to 40 hex digits)"#),
            ("an empty root serial", { $0.rootSerials = [""] }, #"root_serials: "" is not a serial (1 to 40 hex digits)"#),
            ("a root serial with colons", { $0.rootSerials = ["0a:0b"] }, #"root_serials: "0a:0b" is not a serial (1 to 40 hex digits)"#),
            ("an empty serving serial", { $0.servingSerial = "" }, #"serving_serial: "" is not a serial (1 to 40 hex digits)"#),
            ("a serving serial with a space", { $0.servingSerial = s + " " }, "serving_serial: \"\(s) \" is not a serial (1 to 40 hex digits)"),
            ("a 31-byte digest", { $0.bundleSHA256 = Array(repeating: 1, count: 31) },
             "bundle_sha256 must be empty or a SHA-256 digest (32 bytes), not 31 bytes"),
            ("a 33-byte digest", { $0.bundleSHA256 = Array(repeating: 1, count: 33) },
             "bundle_sha256 must be empty or a SHA-256 digest (32 bytes), not 33 bytes"),
            ("a negative notAfter", { $0.servingNotAfter = -1 }, "serving_not_after must not be negative, not -1"),
            ("a negative generation", { $0.trustGeneration = -1 }, "trust_generation must not be negative, not -1"),
            ("a negative rotation time", { $0.lastRotation = -1 }, "last_rotation must not be negative, not -1"),
            ("a negative error time", { $0.lastErrorAt = .min }, "last_error_at must not be negative, not \(Int64.min)"),
            ("negative rotations", { $0.rotations = -1 }, "rotations must not be negative, not -1"),
            ("negative failures", { $0.failures = -1 }, "failures must not be negative, not -1"),
            ("a generation the CA never had", { $0.trustGeneration = 2 }, "trust_generation 2 is newer than the CA's (1)"),
        ]
        for (what, change, message) in cases {
            let error = await refusal { try await harness.authority.recordAgentReport(caller: caller, report: self.report(s, change)) }
            XCTAssertEqual(error, AuthorityError(.invalidArgument, message), what)
        }
        let read4 = try await harness.store.agentReports()
        XCTAssertEqual(read4, [], "no refused report left a row")

        // At the bounds, accepted; serials in canonical form.
        try await harness.authority.recordAgentReport(caller: caller, report: report(s.uppercased()) { report in
            report.hostName = String(repeating: "h", count: 253)
            report.agentVersion = String(repeating: "v", count: 64)
            report.rootSerials = (1...15).map { String(format: "%02X", $0) } + ["00" + String(repeating: "a", count: 38)]
            report.bundleSHA256 = []
        })
        let read5 = try await harness.store.agentReports().first?.report
        let stored = try XCTUnwrap(read5)
        XCTAssertEqual(stored.servingSerial, s)
        XCTAssertEqual(stored.rootSerials.first, "01")
        XCTAssertEqual(stored.rootSerials.last, String(repeating: "a", count: 38), "leading zero bytes dropped, as certificate serials")
        XCTAssertEqual(stored.hostName.utf8.count, 253)
    }

    func testTheLastErrorIsKeptToOneKiBOnACharacterBoundaryWithoutControlCharacters() async throws {
        let (harness, enrolled, caller) = try await enrolledAgent()
        // 1 + 2 × 600 bytes: the cut at 1024 would split an "é"; 1023 bytes are kept.
        try await harness.authority.recordAgentReport(caller: caller, report: report(enrolled.serial) {
            $0.lastError = "a" + String(repeating: "é", count: 600)
        })
        let read6 = try await harness.store.agentReports().first?.report.lastError
        let kept = try XCTUnwrap(read6)
        XCTAssertEqual(kept, "a" + String(repeating: "é", count: 511))
        XCTAssertEqual(kept.utf8.count, 1023)

        try await harness.authority.recordAgentReport(caller: caller, report: report(enrolled.serial) {
            $0.lastError = "renew: unavailable\n\u{1b}[31mred\u{7}\u{202E}"
        })
        let read7 = try await harness.store.agentReports().first?.report.lastError
        XCTAssertEqual(read7, "renew: unavailable  [31mred  ")
        XCTAssertEqual(AgentReportRecord.prefix(String(repeating: "😀", count: 300), bytes: 1024).utf8.count, 1024)
        XCTAssertEqual(AgentReportRecord.prefix("ab😀", bytes: 5), "ab")
    }

    func testAnIdenticalRepeatWithinTenSecondsIsAcknowledgedWithoutAWrite() async throws {
        let (harness, enrolled, caller) = try await enrolledAgent()
        let first = report(enrolled.serial)
        try await harness.authority.recordAgentReport(caller: caller, report: first)
        let written = harness.clock.now
        func reportedAt() async throws -> Date? { try await harness.store.agentReports().first?.reportedAt }

        harness.clock.advance(9.9)
        try await harness.authority.recordAgentReport(caller: caller, report: first)
        let read8 = try await reportedAt()
        XCTAssertEqual(read8, written, "a repeat within 10 s: not written")
        try await harness.authority.recordAgentReport(caller: caller, report: report(enrolled.serial) { $0.failures = 1 })
        let read9 = try await reportedAt()
        XCTAssertEqual(read9, harness.clock.now, "a changed report: written at once")
        let changed = harness.clock.now
        // Text moved from one field to the next is a change too.
        var moved = report(enrolled.serial) { $0.failures = 1 }
        (moved.hostName, moved.agentVersion) = ("web-", "1vouch 1.0")
        XCTAssertNotEqual(RecentAgentReports.digest(of: moved), RecentAgentReports.digest(of: report(enrolled.serial) { $0.failures = 1 }))
        harness.clock.advance(10)
        try await harness.authority.recordAgentReport(caller: caller, report: report(enrolled.serial) { $0.failures = 1 })
        let read10 = try await reportedAt()
        XCTAssertEqual(read10, harness.clock.now, "10 s after the last write: written again (\(changed))")
    }

    func testChangedReportsBeyondTenInTenSecondsAreRefusedNotWritten() async throws {
        let (harness, enrolled, caller) = try await enrolledAgent()
        for failures in 1...10 {
            harness.clock.advance(0.5)
            try await harness.authority.recordAgentReport(caller: caller, report: report(enrolled.serial) { $0.failures = Int64(failures) })
        }
        harness.clock.advance(0.5)
        let error = await refusal {
            try await harness.authority.recordAgentReport(caller: caller, report: self.report(enrolled.serial) { $0.failures = 11 })
        }
        XCTAssertEqual(error, AuthorityError(.resourceExhausted,
                                             "more than 10 changed agent reports in 10 s from certificate \(enrolled.serial); report again later"))
        let stored = try await harness.store.agentReports().first?.report.failures
        XCTAssertEqual(stored, 10, "the refused report was not written")
        // A repeat of what is stored costs nothing and is still acknowledged; the next interval writes again.
        try await harness.authority.recordAgentReport(caller: caller, report: report(enrolled.serial) { $0.failures = 10 })
        harness.clock.advance(5)
        try await harness.authority.recordAgentReport(caller: caller, report: report(enrolled.serial) { $0.failures = 11 })
        let later = try await harness.store.agentReports().first?.report.failures
        XCTAssertEqual(later, 11)
    }

    func testListedProblemsFollowTheCARecordsAndTheClock() async throws {
        let (harness, enrolled, caller) = try await enrolledAgent()
        let root = try XCTUnwrap(harness.authority.issuerSet.roots.first?.serial)
        try await harness.authority.recordAgentReport(caller: caller, report: report(enrolled.serial) { $0.rootSerials = [root] })
        func problems(staleAfter: TimeInterval = 600) async throws -> [AgentProblem] {
            try await harness.authority.listAgents(staleAfter: staleAfter, problemsOnly: false, limit: 10, after: nil).agents.first?.problems ?? []
        }
        let read11 = try await problems()
        XCTAssertEqual(read11, [])
        let read12 = try await harness.authority.agentStateCounts(staleAfter: 600)[.ok]
        XCTAssertEqual(read12, 1)

        // Renewed at the CA, the new certificate never loaded: superseded once the grace is over.
        _ = try await harness.renew(caller)
        harness.clock.advance(61)
        let read13 = try await problems()
        XCTAssertEqual(read13, [.servingSuperseded])
        let read14 = try await problems(staleAfter: 60)
        XCTAssertEqual(read14, [.servingSuperseded, .silent])
        let read15 = try await harness.authority.agentStateCounts(staleAfter: 60)[.superseded]
        XCTAssertEqual(read15, 1)
        let read16 = try await harness.authority.listAgents(staleAfter: 600, problemsOnly: true, limit: 10, after: nil).agents.count
        XCTAssertEqual(read16, 1)

        _ = try await harness.authority.revoke(serial: enrolled.serial, reason: 1, caller: AuthorityHarness.admin)
        let read17 = try await problems()
        XCTAssertEqual(read17, [.servingRevoked, .servingSuperseded])
        let counts = try await harness.authority.agentStateCounts(staleAfter: 600)
        XCTAssertEqual(counts, [.revoked: 1, .expired: 0, .superseded: 0, .silent: 0, .oldBundle: 0, .renewalFailing: 0, .ok: 0])
    }
}
