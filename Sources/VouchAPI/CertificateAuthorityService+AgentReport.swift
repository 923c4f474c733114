import GRPCCore
import VouchAuthority

extension CertificateAuthorityService {
    /// Stores what the calling agent serves and trusts (the fleet view); see
    /// `CertificateAuthority.recordAgentReport` for who may report and what is refused.
    public func reportAgent(request: Vouch_V1_AgentReport, context: ServerContext) async throws -> Vouch_V1_AgentReportResponse {
        try await authority.recordAgentReport(caller: RPCCaller.of(context), report: AgentReportRecord(request))
        return Vouch_V1_AgentReportResponse()
    }
}
