import Testing
import VouchAuthority

/// The audit log's action names are stored in the database and shown by `vouch audit`;
/// old logs must read the same, so the names never change.
@Test func auditActionsKeepTheirStoredNames() {
    #expect(AuditAction.allCases.map(\.rawValue) == [
        "issue", "enroll", "renew", "revoke", "revoke.lineage", "revoke.superseded",
        "token.create", "token.use", "token.revoke", "refused",
        "admin.ListTokens", "admin.ListCertificates", "admin.GetCertificate", "admin.ListAuditEvents", "admin.GetAuditCheckpoint",
        "issuer.create", "issuer.activate", "issuer.retire", "issuer.crl", "issuer.revoke",
        "admin.ListAgents", "admin.VerifyAuditLog",
    ])
}
