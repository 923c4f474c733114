import Foundation

/// Durable state of the authority. Every method that changes state commits
/// before it returns, together with its audit entries, or changes nothing.
public protocol AuthorityStore: Sendable {
    func insertToken(_ token: TokenRecord, audit: AuditEntry) async throws
    func token(id: String) async throws -> TokenRecord?
    func listTokens() async throws -> [TokenRecord]
    /// Marks a token revoked; false if there is no such token.
    func revokeToken(id: String, audit: AuditEntry) async throws -> Bool

    /// In one transaction: consumes one use of the token if it is still usable
    /// at `now` (else throws `AuthorityError` and stores nothing), inserts the
    /// certificate and the audit entries.
    func recordEnrollment(tokenID: String, now: Date, certificate: CertificateRecord, audit: [AuditEntry]) async throws

    /// In one transaction: inserts the certificate, marks `previousSerial` as
    /// superseded by it, and writes the audit entries.
    func recordRenewal(certificate: CertificateRecord, previousSerial: String, audit: [AuditEntry]) async throws

    /// Inserts a certificate issued outside a request (the CA's own server and admin certificates).
    func insertCertificate(_ certificate: CertificateRecord, audit: AuditEntry) async throws

    func certificate(serial: String) async throws -> CertificateRecord?
    func listCertificates(_ query: CertificateQuery) async throws -> [CertificateRecord]
    /// How many certificates match `query`'s filters (its limit is ignored).
    func countCertificates(_ query: CertificateQuery) async throws -> Int

    /// Revokes a certificate; for one already revoked, returns the first
    /// revocation unchanged. Returns nil if there is no such certificate.
    func revoke(serial: String, reason: Int, at time: Date, audit: AuditEntry) async throws -> RevocationRecord?

    /// Revocations with a sequence above `afterSequence`, in order.
    func revocations(afterSequence: Int64) async throws -> [RevocationRecord]

    /// The next CRL number; strictly increasing across restarts.
    func nextCRLNumber() async throws -> Int64

    func appendAudit(_ entry: AuditEntry) async throws
    func auditEvents(afterID: Int64, limit: Int) async throws -> [AuditRecord]

    /// Every audit row with its chain fields, and the recorded head, for `AuditChain.verify`.
    func auditChain() async throws -> (rows: [AuditChain.Row], head: (id: Int64, hash: [UInt8])?)
}
