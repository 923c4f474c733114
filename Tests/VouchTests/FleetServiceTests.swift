import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchCrypto
import XCTest

/// The fleet view through a real `vouch server`: an agent certificate reports over mTLS and an
/// admin lists it; hostile reports (the CA's own identity, another identity's certificate,
/// oversized fields) are refused with a message naming why and leave no row; the
/// `vouch_ca_agents{state}` gauge counts each agent once, every state emitted.
final class FleetServiceTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"
    static let db = "spiffe://example.org/svc/db"

    func listAgents(_ ca: CAFixture, _ change: (inout Vouch_V1_ListAgentsRequest) -> Void = { _ in }) async throws -> Vouch_V1_ListAgentsResponse {
        var request = Vouch_V1_ListAgentsRequest()
        change(&request)
        return try await VouchClient.with(server: ca.address, credentials: ca.admin) { client in
            try await Vouch_V1_Admin.Client(wrapping: client).listAgents(request, options: VouchClient.options())
        }
    }

    /// The status and message of a refused call.
    func refusal(_ body: () async throws -> Void) async -> (RPCError.Code, String)? {
        do {
            try await body()
            return nil
        } catch let error as RPCError {
            return (error.code, error.message)
        } catch {
            return (.unknown, "\(error)")
        }
    }

    func identity(_ ca: CAFixture, _ spiffeID: String, name: String) async throws -> (Vouch_V1_CertificateResponse, VouchClient.Credentials) {
        let key = try PrivateKey(generating: .p256)
        let issued = try await ca.enroll(token: try ca.createToken(spiffeID: spiffeID), key: key)
        return (issued, try ca.writeIdentity(issued, key: key, name: name))
    }

    func testAReportOverMTLSIsListedHostileOnesLeaveNoRowAndTheGaugeCountsEachAgentOnce() async throws {
        let ca = try CAFixture(server: { try ServerProcess(directory: $0, extraArguments: ["--http", "127.0.0.1:0", "--agent-stale-after", "1s"]) })
        let (webIssued, web) = try await identity(ca, Self.web, name: "web")
        let (dbIssued, db) = try await identity(ca, Self.db, name: "db")
        let bundle = try await ca.ca(web) { try await $0.getTrustBundle(Vouch_V1_TrustBundleRequest()) }
        var report = Vouch_V1_AgentReport()
        report.servingSerial = webIssued.serial
        report.servingNotAfter = webIssued.notAfter
        report.trustGeneration = bundle.generation
        report.rootSerials = try bundle.roots.map { try X509Certificate(der: Array($0)).serialHex }
        report.bundleSha256 = Data(repeating: 7, count: 32)
        report.hostName = "web-1.internal"
        report.agentVersion = "vouch test"
        _ = try await ca.ca(web) { try await $0.reportAgent(report) }

        let listed = try await listAgents(ca)
        XCTAssertEqual(listed.agents.count, 1)
        let agent = try XCTUnwrap(listed.agents.first)
        XCTAssertEqual(agent.lineage, webIssued.serial, "named by its enrollment certificate")
        XCTAssertEqual(agent.spiffeID, Self.web)
        XCTAssertEqual(agent.reportedBySerial, webIssued.serial)
        XCTAssertEqual(agent.servingSerial, webIssued.serial)
        XCTAssertEqual(agent.servingNotAfter, webIssued.notAfter)
        XCTAssertEqual(agent.hostName, "web-1.internal")
        XCTAssertEqual(agent.agentVersion, "vouch test")
        XCTAssertEqual(agent.rootSerials, report.rootSerials)
        XCTAssertTrue(agent.peer.hasPrefix("ipv4:127.0.0.1:"), agent.peer)
        XCTAssertEqual(agent.problems, [], "a fresh certificate, the CA's roots, just reported")
        XCTAssertEqual(listed.nextPageToken, "")

        // Hostile reports: refused, naming why.
        var asAdmin = report
        asAdmin.servingSerial = try X509Certificate(pem: String(contentsOfFile: ca.caDir + "/admin.pem", encoding: .utf8)).serialHex
        let adminRefusal = await refusal { _ = try await ca.ca(ca.admin) { try await $0.reportAgent(asAdmin) } }
        XCTAssertEqual(adminRefusal?.0, .permissionDenied)
        XCTAssertEqual(adminRefusal?.1, "spiffe://example.org/vouch/admin is an identity of the CA or its admins, not an agent's; it does not report as an agent")
        var othersCertificate = report
        othersCertificate.servingSerial = webIssued.serial
        let other = await refusal { _ = try await ca.ca(db) { try await $0.reportAgent(othersCertificate) } }
        XCTAssertEqual(other?.0, .invalidArgument)
        XCTAssertEqual(other?.1, "serving_serial \(webIssued.serial) is not a certificate of \(Self.db)")
        var dbReport = report
        dbReport.servingSerial = dbIssued.serial
        let oversized: [(String, (inout Vouch_V1_AgentReport) -> Void, String)] = [
            ("a 254-byte host name", { $0.hostName = String(repeating: "h", count: 254) }, "host_name is 254 bytes; at most 253"),
            ("17 roots", { $0.rootSerials = (1...17).map { String(format: "%02x", $0) } }, "root_serials lists 17 roots; at most 16"),
            ("a 16-byte digest", { $0.bundleSha256 = Data(repeating: 1, count: 16) },
             "bundle_sha256 must be empty or a SHA-256 digest (32 bytes), not 16 bytes"),
        ]
        for (what, change, message) in oversized {
            var hostile = dbReport
            change(&hostile)
            let refused = await refusal { _ = try await ca.ca(db) { try await $0.reportAgent(hostile) } }
            XCTAssertEqual(refused?.0, .invalidArgument, what)
            XCTAssertEqual(refused?.1, message, what)
        }
        let read1 = try await listAgents(ca).agents.map(\.spiffeID)
        XCTAssertEqual(read1, [Self.web], "no refused report left a row")
        await assertRPCError(.permissionDenied, "an agent listing the fleet") {
            try await VouchClient.with(server: ca.address, credentials: web) { client in
                try await Vouch_V1_Admin.Client(wrapping: client).listAgents(Vouch_V1_ListAgentsRequest(), options: VouchClient.options())
            }
        }
        for (what, change) in [("a negative stale threshold", { (r: inout Vouch_V1_ListAgentsRequest) in r.staleAfterSeconds = -1 }),
                               ("a page of 1001", { $0.pageSize = 1001 }), ("a negative page size", { $0.pageSize = -1 }),
                               ("a forged page token", { $0.pageToken = "1 zz spiffe://example.org/x" })] {
            let refused = await refusal { _ = try await self.listAgents(ca, change) }
            XCTAssertEqual(refused?.0, .invalidArgument, what)
        }

        // Audited as every admin read; a report is not.
        let audit = try await VouchClient.with(server: ca.address, credentials: ca.admin) { client in
            try await Vouch_V1_Admin.Client(wrapping: client).listAuditEvents(Vouch_V1_ListAuditEventsRequest(), options: VouchClient.options())
        }.events.map(\.action)
        XCTAssertEqual(audit.filter { $0 == "admin.ListAgents" }.count, 2, "\(audit)")
        XCTAssertFalse(audit.contains { $0.lowercased().contains("report") }, "\(audit)")

        // web's certificate revoked, db reported and then silent past --agent-stale-after 1s.
        _ = try await ca.ca(db) { try await $0.reportAgent(dbReport) }
        _ = try await ca.revoke(webIssued.serial, as: ca.admin)
        let http = try XCTUnwrap(ca.server.httpAddress)
        var metrics = ""
        let expected = ["revoked": 1, "expired": 0, "superseded": 0, "silent": 1, "old_bundle": 0, "renewal_failing": 0, "ok": 0]
        func gauge(_ state: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix("vouch_ca_agents{state=\"\(state)\"} ") }
                .flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        XCTAssertTrue(eventually(timeout: 10) {
            metrics = (try? execute("/usr/bin/curl", ["-sf", "http://\(http)/metrics"]).stdout) ?? ""
            return expected.allSatisfy { gauge($0.key) == Double($0.value) }
        }, metrics)
        let problems = try await listAgents(ca) { $0.problemsOnly = true }.agents.map { [$0.spiffeID: $0.problems] }
        XCTAssertEqual(problems, [[Self.web: [.servingRevoked]]], "db is not silent at ListAgents' default 600 s")
        // Without a certificate, or with a revoked one, there is no report at all.
        await assertRPCError(.unauthenticated, "an anonymous report") { _ = try await ca.ca(ca.anonymous) { try await $0.reportAgent(dbReport) } }
        await assertRPCError(.unavailable, "a report from the revoked certificate (refused at the handshake)") {
            _ = try await ca.ca(web) { try await $0.reportAgent(report) }
        }
        // A page at a time: web (a problem) first, then db, and no token after the last.
        let first = try await listAgents(ca) { $0.pageSize = 1 }
        let second = try await listAgents(ca) { $0.pageSize = 1; $0.pageToken = first.nextPageToken }
        XCTAssertEqual((first.agents + second.agents).map(\.spiffeID), [Self.web, Self.db])
        XCTAssertEqual(second.agents.first?.lineage, dbIssued.serial)
        XCTAssertNotEqual(first.nextPageToken, "")
        XCTAssertEqual(second.nextPageToken, "")
    }

    func testAStaleThresholdThatIsNotAPositiveDurationStopsTheServerInOneLine() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        XCTAssertEqual(try vouch("ca", "init", "--dir", root + "/ca", "--trust-domain", "example.org").status, 0)
        try "server:\n  agent_stale_after: soon\n".write(toFile: root + "/vouch.yaml", atomically: true, encoding: .utf8)
        for (arguments, message) in [(["--agent-stale-after", "0s"], "vouch: --agent-stale-after must be positive"),
                                     (["--config", root + "/vouch.yaml"],
                                      #"vouch: config key server.agent_stale_after: "soon" is not a duration like 30s, 15m, 24h"#)] {
            let result = try vouch(["server", "--dir", root + "/ca", "--listen", "127.0.0.1:0"] + arguments, environment: [:])
            XCTAssertNotEqual(result.status, 0)
            XCTAssertEqual(result.stderr, message + "\n", "refused before the database is opened: one line")
        }
    }
}
