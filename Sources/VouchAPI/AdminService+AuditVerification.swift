import GRPCCore
import VouchAuthority

extension AdminService {
    /// Placeholder until the audit verification lands; replaced in the same change set.
    public func verifyAuditLog(request: Vouch_V1_VerifyAuditLogRequest, context: ServerContext) async throws -> Vouch_V1_AuditLogVerification {
        throw RPCError(code: .unimplemented, message: "VerifyAuditLog is not available yet")
    }
}
