/// What the CA finds when it checks its own audit log from the latest signed checkpoint to the
/// head: the check `vouch audit checkpoint` makes before signing, answered without signing.
public struct AuditLogVerification: Sendable, Equatable {
    /// Id of the newest row (0 for an empty log).
    public let headRowID: Int64
    /// The first row checked: the latest checkpoint's row, or 0 (the genesis) without one.
    public let verifiedFromRowID: Int64
    /// The latest stored checkpoint, whose signature was checked.
    public let latestCheckpoint: AuditCheckpoint?
    /// The first row that does not chain (0 when the checkpoint itself is the problem) and why;
    /// nil when intact.
    public let broken: Broken?

    public struct Broken: Sendable, Equatable {
        public let rowID: Int64
        public let problem: String
    }

    public var isIntact: Bool { broken == nil }
}

extension AuditCheckpointer {
    /// Checks the latest checkpoint's signature and that every row since it continues the chain up
    /// to the recorded head. Without a checkpoint, the whole log is checked from the genesis hash.
    public func verify() async throws -> AuditLogVerification {
        try await verify(head: store.auditHead())
    }

    /// Checks up to `head`, read once by the caller, so a checkpoint signs exactly the head checked.
    func verify(head: (id: Int64, hash: [UInt8])?) async throws -> AuditLogVerification {
        let last = try await store.latestAuditCheckpoint()
        func result(_ broken: AuditLogVerification.Broken?) -> AuditLogVerification {
            AuditLogVerification(headRowID: head?.id ?? 0, verifiedFromRowID: last?.rowID ?? 0, latestCheckpoint: last, broken: broken)
        }
        guard let head else {
            return result(.init(rowID: 0, problem: "the audit_head record is missing"))
        }
        if let last {
            if let problem = last.signatureProblem(certificate: intermediate(last.signer) ?? signer().certificate) {
                return result(.init(rowID: 0, problem: "the latest stored checkpoint (row \(last.rowID)) is invalid: \(problem)"))
            }
            guard last.rowID <= head.id else {
                return result(.init(rowID: 0, problem: "the log ends at row \(head.id), before the last checkpoint's row \(last.rowID)"))
            }
        }
        let from = (id: last?.rowID ?? 0, hash: last?.hash ?? AuditChain.genesis)
        let rows = try await store.auditChainRows(afterID: from.id)
        if let broken = AuditChain.verifyTail(rows, after: from, head: head) {
            return result(.init(rowID: broken.rowID, problem: "audit log broken at row \(broken.rowID): \(broken.reason)"))
        }
        return result(nil)
    }
}
