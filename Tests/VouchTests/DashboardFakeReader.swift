import Foundation
import GRPCCore
import Synchronization
import VouchAPI
import VouchDashboard

/// Admin API answers from memory for the dashboard's in-process page tests; records what was asked.
final class FakeAdminReader: AdminReader, AdminConnector, Sendable {
    struct State {
        var certificates: [Vouch_V1_CertificateInfo] = []
        var events: [Vouch_V1_AuditEvent] = []
        var agents: [Vouch_V1_AgentInfo] = []
        var verification: Vouch_V1_AuditLogVerification?
        var nextPageToken = ""
        var agentsError: RPCError?
        var connectError: RPCError?
        var listRequests: [Vouch_V1_ListCertificatesRequest] = []
        var serialsAsked: [String] = []
        var auditCalls = 0
        var connections = 0
    }

    let state: Mutex<State>

    init(_ state: State = State()) { self.state = Mutex(state) }

    var serverDescription: String { "127.0.0.1:8443" }

    func withReader<Result: Sendable>(_ body: (any AdminReader) async throws -> Result) async throws -> Result {
        if let error = state.withLock({ state -> RPCError? in
            state.connections += 1
            return state.connectError
        }) { throw error }
        return try await body(self)
    }

    func listCertificates(_ request: Vouch_V1_ListCertificatesRequest) async throws -> Vouch_V1_ListCertificatesResponse {
        state.withLock { state in
            state.listRequests.append(request)
            var response = Vouch_V1_ListCertificatesResponse()
            response.certificates = state.certificates.filter { info in
                request.status == .unspecified || info.status == request.status
            }
            // Only the inventory pages by hand; the others read every page.
            if request.pageSize < 1000 { response.nextPageToken = state.nextPageToken }
            return response
        }
    }

    func certificate(serial: String) async throws -> Vouch_V1_CertificateInfo {
        try state.withLock { state in
            state.serialsAsked.append(serial)
            guard let info = state.certificates.first(where: { $0.serial == serial }) else {
                throw RPCError(code: .notFound, message: "no certificate \(serial)")
            }
            return info
        }
    }

    func auditEvents(after id: Int64, limit: Int32) async throws -> [Vouch_V1_AuditEvent] {
        state.withLock { state in
            state.auditCalls += 1
            return Array(state.events.filter { $0.id > id }.prefix(Int(limit)))
        }
    }

    func verifyAuditLog() async throws -> Vouch_V1_AuditLogVerification {
        guard let verification = state.withLock({ $0.verification }) else {
            throw RPCError(code: .unimplemented, message: "Method not found: vouch.v1.Admin/VerifyAuditLog")
        }
        return verification
    }

    func listAgents(_ request: Vouch_V1_ListAgentsRequest) async throws -> Vouch_V1_ListAgentsResponse {
        try state.withLock { state in
            if let error = state.agentsError { throw error }
            var response = Vouch_V1_ListAgentsResponse()
            response.agents = state.agents.filter { !request.problemsOnly || !$0.problems.isEmpty }
            return response
        }
    }
}

/// Values the CA refuses at issuance or takes as free text from agents, planted to check that
/// every page shows them as text.
enum DashboardHostileData {
    static let spiffeID = "spiffe://example.org/<script>window.pwned=1</script>"
    static let dnsName = "\"><img src=x onerror=window.pwned=1>"
    static let hostName = "web'1&<b onmouseover=alert(1)>"
    static let lastError = "<script>alert('x')</script> ' & \" <img src=x onerror=alert(1)>"
    static let auditDetail = "'><img src=x onerror=alert(1)><script>alert(2)</script>"
    static let problem = "<script>broken</script>"
    static let all = [spiffeID, dnsName, hostName, lastError, auditDetail, problem]

    static func fakeState(now: Int64) -> FakeAdminReader.State {
        var state = FakeAdminReader.State()
        func certificate(_ serial: String, _ id: String, status: Vouch_V1_CertificateStatus, notAfter: Int64) -> Vouch_V1_CertificateInfo {
            var info = Vouch_V1_CertificateInfo()
            info.serial = serial
            info.spiffeID = id
            info.dnsNames = [dnsName, "web.example.org"]
            info.ipAddresses = ["127.0.0.1"]
            info.status = status
            info.notBefore = now - 3600
            info.notAfter = notAfter
            info.issuedAt = now - 3600
            if status == .revoked {
                info.revokedAt = now - 60
                info.revocationReason = 1
            }
            return info
        }
        state.certificates = [
            certificate("0a1b", spiffeID, status: .active, notAfter: now + 2 * 3600),
            certificate("0c2d", spiffeID, status: .revoked, notAfter: now + 5 * 3600),
            certificate("0e3f", "spiffe://example.org/svc/db", status: .active, notAfter: now + 30 * 3600),
        ]
        var agent = Vouch_V1_AgentInfo()
        agent.lineage = "0a1b"
        agent.spiffeID = spiffeID
        agent.hostName = hostName
        agent.agentVersion = hostName
        agent.servingSerial = "0a1b"
        agent.servingNotAfter = now + 3600
        agent.lastError = lastError
        agent.lastReport = now - 30
        agent.problems = [.renewalFailing, .silent]
        var healthy = agent
        healthy.lineage = "0e3f"
        healthy.spiffeID = "spiffe://example.org/svc/db"
        healthy.lastError = ""
        healthy.problems = []
        state.agents = [healthy, agent]
        state.events = (1...120).map { id in
            var event = Vouch_V1_AuditEvent()
            event.id = Int64(id)
            event.time = now - 120 + Int64(id)
            event.actor = spiffeID
            event.action = "enroll"
            event.subject = "0a1b"
            event.peer = "ipv4:127.0.0.1:5000"
            event.detail = auditDetail
            return event
        }
        var verification = Vouch_V1_AuditLogVerification()
        verification.intact = false
        verification.headRowID = 120
        verification.verifiedFromRowID = 1
        verification.brokenRowID = 7
        verification.problem = problem
        state.verification = verification
        return state
    }
}
