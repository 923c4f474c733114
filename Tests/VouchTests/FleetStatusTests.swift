import Foundation
import VouchAuthority
import XCTest

/// How the CA judges an agent's latest report (FleetJudge), rule by rule, at the boundaries, on
/// a fixed instant: the problems ListAgents lists and the state `vouch_ca_agents` counts.
final class FleetStatusTests: XCTestCase {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let judge = FleetJudge(now: now, staleAfter: 600, currentRoots: ["r1", "r2"], newestRootGeneration: 5)

    /// A healthy agent: serves an unrevoked, unrenewed certificate valid for an hour, holds both
    /// roots, reported just now, renewed after its last error.
    static func row(_ change: (inout AgentReportRow) -> Void = { _ in }) -> AgentReportRow {
        var row = AgentReportRow(
            lineage: "0a", callerSerial: "0b", spiffeID: "spiffe://example.org/svc/web",
            report: AgentReportRecord(servingSerial: "0b", servingNotAfter: Int64(now.timeIntervalSince1970) + 3600, trustGeneration: 5,
                                      rootSerials: ["r2", "r1"], lastRotation: 1000, lastError: "CA unreachable", lastErrorAt: 900),
            firstSeen: now.addingTimeInterval(-86400), reportedAt: now, peer: "ipv4:10.0.0.1:5000",
            served: ServedCertificate(notAfter: now.addingTimeInterval(3600)))
        change(&row)
        return row
    }

    func problems(_ change: (inout AgentReportRow) -> Void) -> [AgentProblem] {
        Self.judge.problems(of: Self.row(change))
    }

    func testAHealthyAgentHasNoProblemAndCountsAsOK() {
        XCTAssertEqual(Self.judge.problems(of: Self.row()), [])
        XCTAssertEqual(AgentState([]), .ok)
    }

    func testTheServedCertificateIsExpiredAtItsNotAfterNotBefore() {
        XCTAssertEqual(problems { $0.served?.notAfter = Self.now.addingTimeInterval(1) }, [])
        XCTAssertEqual(problems { $0.served?.notAfter = Self.now }, [.servingExpired])
        // The CA's record wins over what the agent says; without a record, the agent's word is all there is.
        XCTAssertEqual(problems { $0.report.servingNotAfter = 0 }, [], "the stored notAfter is the one judged")
        XCTAssertEqual(problems { $0.served = nil; $0.report.servingNotAfter = Int64(Self.now.timeIntervalSince1970) }, [.servingExpired])
        XCTAssertEqual(problems { $0.served = nil }, [])
    }

    func testARevokedServedCertificateIsServingRevoked() {
        XCTAssertEqual(problems { $0.served?.revokedAt = Self.now.addingTimeInterval(-1) }, [.servingRevoked])
    }

    func testAServedCertificateRenewedMoreThanAMinuteAgoIsSuperseded() {
        func renewed(_ ago: TimeInterval?) -> [AgentProblem] {
            problems { row in
                row.served?.supersededBy = "0c"
                row.served?.successorIssuedAt = ago.map { Self.now.addingTimeInterval(-$0) }
            }
        }
        XCTAssertEqual(renewed(60), [], "the grace: the rotation's own report may still be on its way")
        XCTAssertEqual(renewed(61), [.servingSuperseded])
        XCTAssertEqual(renewed(nil), [.servingSuperseded], "a successor the CA has no record of is no grace")
    }

    func testABundleThatIsNotTheCurrentRootsIsOld() {
        XCTAssertEqual(problems { $0.report.rootSerials = ["r1"] }, [.oldBundle], "the prepared root missing")
        XCTAssertEqual(problems { $0.report.rootSerials = ["r1", "r2", "r0"] }, [.oldBundle], "a retired root still held")
        XCTAssertEqual(problems { $0.report.rootSerials = ["r1", "r2", "r2"] }, [], "order and repeats do not matter")
        // Without root serials, the generation decides: at least the one that made the newest root.
        XCTAssertEqual(problems { $0.report.rootSerials = []; $0.report.trustGeneration = 5 }, [])
        XCTAssertEqual(problems { $0.report.rootSerials = []; $0.report.trustGeneration = 4 }, [.oldBundle])
        XCTAssertEqual(problems { $0.report.rootSerials = []; $0.report.trustGeneration = 0 }, [.oldBundle])
    }

    func testAnAgentIsSilentOnlyAfterTheStaleThreshold() {
        XCTAssertEqual(problems { $0.reportedAt = Self.now.addingTimeInterval(-600) }, [])
        XCTAssertEqual(problems { $0.reportedAt = Self.now.addingTimeInterval(-601) }, [.silent])
        let quick = FleetJudge(now: Self.now, staleAfter: 1, currentRoots: ["r1", "r2"], newestRootGeneration: 5)
        XCTAssertEqual(quick.problems(of: Self.row { $0.reportedAt = Self.now.addingTimeInterval(-2) }), [.silent])
    }

    func testRenewalIsFailingWhenTheLastErrorCameAfterTheLastRotation() {
        XCTAssertEqual(problems { $0.report.lastErrorAt = 1001 }, [.renewalFailing])
        XCTAssertEqual(problems { $0.report.lastErrorAt = 1000 }, [], "at the same second, the rotation is taken as later")
        XCTAssertEqual(problems { $0.report.lastErrorAt = 1001; $0.report.lastError = "" }, [], "no error text: the last attempt succeeded")
        XCTAssertEqual(problems { $0.report.lastErrorAt = 5; $0.report.lastRotation = 0 }, [.renewalFailing], "no rotation since start")
    }

    func testEveryProblemAtOnceIsListedInOrderAndCountedInTheFirstState() {
        let all = problems { row in
            row.served = ServedCertificate(notAfter: Self.now, revokedAt: Self.now, supersededBy: "0c", successorIssuedAt: .distantPast)
            row.report.rootSerials = ["r9"]
            row.reportedAt = .distantPast
            row.report.lastErrorAt = 2000
        }
        XCTAssertEqual(all, AgentProblem.allCases)
        // Each agent in one state: the first that applies of revoked, expired, superseded, silent, old_bundle, renewal_failing.
        XCTAssertEqual(AgentState(all), .revoked)
        XCTAssertEqual(AgentState([.servingExpired, .servingSuperseded]), .expired)
        XCTAssertEqual(AgentState([.silent, .servingSuperseded]), .superseded)
        XCTAssertEqual(AgentState([.renewalFailing, .oldBundle, .silent]), .silent)
        XCTAssertEqual(AgentState([.renewalFailing, .oldBundle]), .oldBundle)
        XCTAssertEqual(AgentState([.renewalFailing]), .renewalFailing)
    }

    func testStateCountsNameEveryStateZeroIncluded() {
        let counts = Self.judge.stateCounts([
            Self.row(), Self.row { $0.lineage = "0d" },
            Self.row { $0.lineage = "0e"; $0.reportedAt = .distantPast; $0.report.rootSerials = ["r1"] },
        ])
        XCTAssertEqual(counts, [.ok: 2, .silent: 1, .revoked: 0, .expired: 0, .superseded: 0, .oldBundle: 0, .renewalFailing: 0])
        XCTAssertEqual(Self.judge.stateCounts([]).count, AgentState.allCases.count)
        XCTAssertEqual(AgentState.allCases.map(\.rawValue), ["revoked", "expired", "superseded", "silent", "old_bundle", "renewal_failing", "ok"])
    }

    func testPagesListProblemsFirstThenBySPIFFEIDAndResumeAfterTheirToken() throws {
        let rows = [
            Self.row { $0.lineage = "01"; $0.spiffeID = "spiffe://example.org/a" },
            Self.row { $0.lineage = "02"; $0.spiffeID = "spiffe://example.org/z"; $0.reportedAt = .distantPast },
            Self.row { $0.lineage = "03"; $0.spiffeID = "spiffe://example.org/b" },
            Self.row { $0.lineage = "04"; $0.spiffeID = "spiffe://example.org/a" },
            Self.row { $0.lineage = "05"; $0.spiffeID = "spiffe://example.org/y"; $0.report.rootSerials = [] ; $0.report.trustGeneration = 1 },
        ]
        var seen: [String] = [], position: AgentListPosition?
        repeat {
            let page = Self.judge.page(rows.shuffled(), problemsOnly: false, limit: 2, after: position)
            seen += page.agents.map(\.row.lineage)
            position = try page.next.map { try XCTUnwrap(AgentListPosition(token: $0.token)) }
        } while position != nil
        XCTAssertEqual(seen, ["05", "02", "01", "04", "03"])
        XCTAssertEqual(Self.judge.page(rows, problemsOnly: true, limit: 100, after: nil).agents.map(\.row.lineage), ["05", "02"])
        XCTAssertNil(Self.judge.page(rows, problemsOnly: false, limit: 5, after: nil).next, "no token when nothing follows")
        for bad in ["", "2 0a spiffe://x", "1 0A spiffe://x", "1 zz spiffe://x", "1  spiffe://x", "1 0a"] {
            XCTAssertNil(AgentListPosition(token: bad), bad)
        }
    }
}
