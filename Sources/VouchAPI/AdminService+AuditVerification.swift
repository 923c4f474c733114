import Foundation
import GRPCCore
import VouchAuthority

extension AdminService {
    /// The check a checkpoint makes before signing, answered without signing: the dashboard
    /// shows it next to the audit tail. The call itself is audited first, as every admin read.
    public func verifyAuditLog(request: Vouch_V1_VerifyAuditLogRequest, context: ServerContext) async throws -> Vouch_V1_AuditLogVerification {
        guard let auditCheckpoints else {
            throw AuthorityError(.failedPrecondition, "this server does not check its audit log")
        }
        try await authority.auditAdminRead(.adminVerifyAuditLog, caller: RPCCaller.of(context))
        return Vouch_V1_AuditLogVerification(try await auditCheckpoints.verify())
    }
}

extension Vouch_V1_AuditLogVerification {
    init(_ verification: AuditLogVerification) {
        self.init()
        intact = verification.isIntact
        headRowID = verification.headRowID
        verifiedFromRowID = verification.verifiedFromRowID
        brokenRowID = verification.broken?.rowID ?? 0
        problem = verification.broken?.problem ?? ""
        if let checkpoint = verification.latestCheckpoint { latestCheckpoint = Vouch_V1_AuditCheckpoint(checkpoint) }
    }
}
