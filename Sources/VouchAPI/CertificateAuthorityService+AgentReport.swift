import GRPCCore
import VouchAuthority

extension CertificateAuthorityService {
    /// Placeholder until the fleet store lands; replaced in the same change set.
    public func reportAgent(request: Vouch_V1_AgentReport, context: ServerContext) async throws -> Vouch_V1_AgentReportResponse {
        throw RPCError(code: .unimplemented, message: "ReportAgent is not available yet")
    }
}
