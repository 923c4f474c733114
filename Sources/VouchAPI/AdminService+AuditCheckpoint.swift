import Foundation
import GRPCCore
import VouchAuthority

extension AdminService {
    /// Audits the call first, then signs the head: the checkpoint covers the request for it.
    public func getAuditCheckpoint(request: Vouch_V1_GetAuditCheckpointRequest, context: ServerContext) async throws -> Vouch_V1_AuditCheckpoint {
        guard let auditCheckpoints else {
            throw AuthorityError(.failedPrecondition, "this server does not sign audit checkpoints")
        }
        try await authority.auditAdminRead(.adminGetAuditCheckpoint, caller: RPCCaller.of(context))
        return Vouch_V1_AuditCheckpoint(try await auditCheckpoints.checkpoint())
    }
}

extension Vouch_V1_AuditCheckpoint {
    public init(_ checkpoint: AuditCheckpoint) {
        self.init()
        rowID = checkpoint.rowID
        hash = Data(checkpoint.hash)
        time = checkpoint.time.unixSeconds
        signer = checkpoint.signer
        signature = Data(checkpoint.signature)
        text = checkpoint.text
    }
}
