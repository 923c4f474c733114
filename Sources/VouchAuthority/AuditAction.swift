/// What an audit log entry records. The raw value is the text the database stores and
/// `vouch audit` shows.
public enum AuditAction: String, Sendable, CaseIterable {
    /// A certificate issued without the server: `vouch ca init`, `vouch ca admin-cert`.
    case issue
    case enroll
    case renew
    case revoke
    /// A renewal of a certificate revoked for keyCompromise, revoked with it.
    case revokeLineage = "revoke.lineage"
    /// The child a renewal retry replaces.
    case revokeSuperseded = "revoke.superseded"
    case tokenCreate = "token.create"
    case tokenUse = "token.use"
    case tokenRevoke = "token.revoke"
    /// A refused request or TLS handshake.
    case refused
    /// Read-only admin calls, so the log shows who looked at what.
    case adminListTokens = "admin.ListTokens"
    case adminListCertificates = "admin.ListCertificates"
    case adminGetCertificate = "admin.GetCertificate"
    case adminListAuditEvents = "admin.ListAuditEvents"
    case adminGetAuditCheckpoint = "admin.GetAuditCheckpoint"
    /// A new issuer (intermediate, root, cross certificate or endorsement) stored.
    case issuerCreate = "issuer.create"
    /// An issuer made the signing one.
    case issuerActivate = "issuer.activate"
    /// An issuer moved to retiring or retired.
    case issuerRetire = "issuer.retire"
    /// A root's CRL signed (RootCRL.swift).
    case issuerCRL = "issuer.crl"
    /// An intermediate or cross certificate revoked by its root.
    case issuerRevoke = "issuer.revoke"
    /// Read-only admin calls added later (after the issuer actions, so stored names keep their order).
    case adminListAgents = "admin.ListAgents"
    case adminVerifyAuditLog = "admin.VerifyAuditLog"
}
