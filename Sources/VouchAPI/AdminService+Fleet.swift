import GRPCCore
import VouchAuthority

extension AdminService {
    /// Placeholder until the fleet store lands; replaced in the same change set.
    public func listAgents(request: Vouch_V1_ListAgentsRequest, context: ServerContext) async throws -> Vouch_V1_ListAgentsResponse {
        throw RPCError(code: .unimplemented, message: "ListAgents is not available yet")
    }
}
