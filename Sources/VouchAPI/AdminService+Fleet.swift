import Foundation
import GRPCCore
import VouchAuthority

extension AdminService {
    /// Every agent that ever reported, problems first, then by SPIFFE ID, a page at a time. Audited
    /// as the other admin reads.
    public func listAgents(request: Vouch_V1_ListAgentsRequest, context: ServerContext) async throws -> Vouch_V1_ListAgentsResponse {
        guard request.pageSize >= 0, request.pageSize <= 1000 else {
            throw AuthorityError(.invalidArgument, "page_size must be 0-1000, not \(request.pageSize)")
        }
        guard request.staleAfterSeconds >= 0 else {
            throw AuthorityError(.invalidArgument, "stale_after_seconds must not be negative, not \(request.staleAfterSeconds)")
        }
        var cursor: AgentListCursor?
        if !request.pageToken.isEmpty {
            guard let parsed = AgentListCursor(token: request.pageToken) else { throw AuthorityError(.invalidArgument, "bad page_token") }
            cursor = parsed
        }
        let staleAfter = request.staleAfterSeconds == 0 ? FleetJudge.defaultStaleAfter : TimeInterval(request.staleAfterSeconds)
        let (agents, next) = try await authority.listAgents(staleAfter: staleAfter, problemsOnly: request.problemsOnly,
                                                            limit: request.pageSize == 0 ? 100 : Int(request.pageSize), after: cursor)
        var response = Vouch_V1_ListAgentsResponse()
        response.agents = agents.map(Vouch_V1_AgentInfo.init)
        response.nextPageToken = next?.token ?? ""
        try await authority.auditAdminRead(.adminListAgents, caller: RPCCaller.of(context))
        return response
    }
}
