import Foundation

/// Everything a store holds, as plain records with their stored ids: what `vouch db migrate` reads
/// from one store and writes into another. Read in one transaction, so it is one consistent state.
public struct AuthorityStoreSnapshot: Sendable {
    /// A revocation row: its sequence number is what watchers resume after.
    public struct Revocation: Sendable, Equatable {
        public var sequence: Int64
        public var serial: String
        public var reason: Int
        public var revokedAt: Date

        public init(sequence: Int64, serial: String, reason: Int, revokedAt: Date) {
            self.sequence = sequence
            self.serial = serial
            self.reason = reason
            self.revokedAt = revokedAt
        }
    }

    /// A stored checkpoint with its row id.
    public struct Checkpoint: Sendable, Equatable {
        public var id: Int64
        public var checkpoint: AuditCheckpoint

        public init(id: Int64, checkpoint: AuditCheckpoint) {
            self.id = id
            self.checkpoint = checkpoint
        }
    }

    /// The recorded head of the audit chain.
    public struct AuditHead: Sendable, Equatable {
        public var id: Int64
        public var hash: [UInt8]

        public init(id: Int64, hash: [UInt8]) {
            self.id = id
            self.hash = hash
        }
    }

    /// Row counts, for the summary and for checking a copy.
    public struct Counts: Sendable, Equatable, Codable {
        public var certificates: Int
        public var tokens: Int
        public var revocations: Int
        public var auditEvents: Int
        public var auditCheckpoints: Int
        public var issuers: Int
        public var trustConfirmations: Int
        public var agentReports: Int

        public init(certificates: Int, tokens: Int, revocations: Int, auditEvents: Int, auditCheckpoints: Int,
                    issuers: Int = 0, trustConfirmations: Int = 0, agentReports: Int = 0) {
            self.agentReports = agentReports
            self.certificates = certificates
            self.tokens = tokens
            self.revocations = revocations
            self.auditEvents = auditEvents
            self.auditCheckpoints = auditCheckpoints
            self.issuers = issuers
            self.trustConfirmations = trustConfirmations
        }
    }

    /// With `id`, `supersededBy`, `renewedFrom` and `tokenID`; the revocation fields are left nil
    /// (they live in `revocations`).
    public var certificates: [CertificateRecord]
    /// Hashes only, with the uses consumed.
    public var tokens: [TokenRecord]
    public var revocations: [Revocation]
    /// With ids and chain fields, in id order.
    public var auditEvents: [AuditChain.Row]
    public var auditHead: AuditHead?
    public var auditCheckpoints: [Checkpoint]
    /// The last CRL number handed out.
    public var crlNumber: Int64
    /// The highest id each table's counter ever gave out (at least its highest row id), so the
    /// copy's counters continue past it: "certificate", "revocation", "audit_event", "audit_checkpoint", "issuer".
    public var idCounters: [String: Int64]
    /// With ids, CRL numbers and key material as stored, in id order.
    public var issuers: [IssuerRecord]
    public var issuerGeneration: Int64
    public var trustConfirmations: [TrustConfirmation]
    /// Without `served` (joined at read time, not stored).
    public var agentReports: [AgentReportRow]

    public init(certificates: [CertificateRecord], tokens: [TokenRecord], revocations: [Revocation], auditEvents: [AuditChain.Row],
                auditHead: AuditHead?, auditCheckpoints: [Checkpoint], crlNumber: Int64, idCounters: [String: Int64],
                issuers: [IssuerRecord] = [], issuerGeneration: Int64 = 0, trustConfirmations: [TrustConfirmation] = [],
                agentReports: [AgentReportRow] = []) {
        self.agentReports = agentReports
        self.issuers = issuers
        self.issuerGeneration = issuerGeneration
        self.trustConfirmations = trustConfirmations
        self.certificates = certificates
        self.tokens = tokens
        self.revocations = revocations
        self.auditEvents = auditEvents
        self.auditHead = auditHead
        self.auditCheckpoints = auditCheckpoints
        self.crlNumber = crlNumber
        self.idCounters = idCounters
    }

    public var counts: Counts {
        Counts(certificates: certificates.count, tokens: tokens.count, revocations: revocations.count,
               auditEvents: auditEvents.count, auditCheckpoints: auditCheckpoints.count, issuers: issuers.count,
               trustConfirmations: trustConfirmations.count, agentReports: agentReports.count)
    }
}
