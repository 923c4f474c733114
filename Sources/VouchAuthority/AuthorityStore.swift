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

    /// In one transaction: inserts the certificate, marks `previousSerial` as superseded by it,
    /// and writes the audit entries; provided `previousSerial` is unrevoked and its successor is
    /// still `replacing` (nil: not renewed yet). Otherwise throws `AuthorityError(.failedPrecondition)`
    /// and stores nothing, so of two concurrent renewals from one certificate only one lands. A
    /// replaced successor must, in the same transaction, be unrevoked, not renewed itself, and
    /// `previousSerial`'s only renewal so far (else the same refusal); it is then revoked (reason
    /// superseded) and returned, provided `budget` (if any) allows one more revocation.
    func recordRenewal(certificate: CertificateRecord, previousSerial: String, replacing: String?,
                       at time: Date, budget: RevocationBudget?, audit: [AuditEntry]) async throws -> RevocationRecord?

    /// Inserts a certificate issued outside a request (the CA's own server and admin certificates).
    func insertCertificate(_ certificate: CertificateRecord, audit: AuditEntry) async throws

    func certificate(serial: String) async throws -> CertificateRecord?
    func listCertificates(_ query: CertificateQuery) async throws -> [CertificateRecord]
    /// How many certificates match `query`'s filters (its limit is ignored).
    func countCertificates(_ query: CertificateQuery) async throws -> Int

    /// In one transaction: revokes a certificate and, with `withRenewals`, every certificate
    /// renewed from it, transitively; `audit` makes the entry for each certificate newly revoked
    /// (serial, SPIFFE ID). Returns the revocations of all of them (an earlier revocation is kept
    /// unchanged), the target's included; empty if there is no such certificate. With a `budget`,
    /// the certificates newly revoked must fit in it (counted in the same transaction), else it
    /// throws its refusal and revokes nothing.
    func revoke(serial: String, reason: Int, at time: Date, withRenewals: Bool, budget: RevocationBudget?,
                audit: @escaping @Sendable (_ serial: String, _ spiffeID: String) -> AuditEntry) async throws -> [RevocationRecord]

    /// The serials renewed from `serial`, transitively, in issuance order.
    func renewals(of serial: String) async throws -> [String]

    /// Revocations with a sequence above `afterSequence`, in order.
    func revocations(afterSequence: Int64) async throws -> [RevocationRecord]

    // MARK: Issuers (see Issuers.swift)

    /// Idempotent: if no issuer is stored, in one write transaction inserts `root` and
    /// `intermediate` (the CA directory's pair) as active, the intermediate's parent the root and
    /// its CRL number the last one the database used, sets every certificate without an issuer to
    /// the intermediate, and moves the generation to 1. Returns the stored issuers either way (the
    /// caller checks they are its pair). The records' ids, parents and generations are ignored.
    func adoptInitialIssuers(root: IssuerRecord, intermediate: IssuerRecord) async throws -> IssuerSnapshot
    /// Every issuer and the generation they belong to, read together.
    func issuers() async throws -> IssuerSnapshot
    /// The current generation alone (one row; 0 before adoption), for followers to poll.
    func issuerGeneration() async throws -> Int64
    /// In one transaction: refuses with `AuthorityError(.failedPrecondition,
    /// IssuerChange.staleGenerationMessage)` and changes nothing unless the generation is still
    /// `expectedGeneration`; applies `change` (updates, then inserts); writes `audit`; moves the
    /// generation up by one and returns it. An intermediate that becomes active takes a CRL number
    /// at least the highest any issuer used, so the active CRL's number never drops. A second
    /// active root or intermediate is refused (`failedPrecondition`). On PostgreSQL it also
    /// notifies `vouch_issuers` with the new generation.
    func changeIssuers(_ change: IssuerChange, expectedGeneration: Int64, audit: [AuditEntry]) async throws -> Int64
    /// In one transaction: takes `issuerID`'s next CRL number (strictly increasing across restarts
    /// and processes), then reads the revocations of the certificates it issued (a certificate with
    /// no recorded issuer is the initial intermediate's). Whoever takes that issuer's following
    /// number waits until this read is done, so a CRL with a higher number never lists fewer
    /// revocations, whichever replica made it: a relying party keeping the highest-numbered CRL
    /// loses none. Throws `notFound` for an unknown issuer.
    func nextCRLNumberAndRevocations(issuerID: Int64) async throws -> (number: Int64, revocations: [RevocationRecord])
    /// Upserts an agent's confirmation by certificate serial (a lower generation than the one
    /// stored changes nothing). No audit row. Throws `notFound` for an unknown serial.
    func recordTrustConfirmation(serial: String, spiffeID: String, generation: Int64, bundleSHA256: [UInt8],
                                 peer: String, at time: Date) async throws
    /// Every stored confirmation, by serial.
    func trustConfirmations() async throws -> [TrustConfirmation]
    /// What a rollover away from `rootID` still waits for, at `now`: see `RolloverCounts`.
    /// Confirmations count from `generation` up. `adminIDs` are counted as the CA's own
    /// certificates, as are SPIFFE IDs under `/vouch/`.
    func rolloverCounts(rootID: Int64, generation: Int64, now: Date, adminIDs: Set<String>) async throws -> RolloverCounts

    // MARK: Agent reports (the fleet view, CertificateAuthority+Fleet.swift)

    /// Upserts `report` as the latest of the lineage `callerSerial` belongs to (the serial at the
    /// root of its `renewed_from` chain), keeping that lineage's first_seen. One short write, not
    /// queued behind issuance; no audit row. Throws `notFound` for an unknown `callerSerial`.
    func recordAgentReport(_ report: AgentReportRecord, callerSerial: String, spiffeID: String, peer: String,
                           at time: Date) async throws
    /// Every lineage's latest report, by lineage, each with what the certificate table says of the
    /// certificate it serves (`served`: notAfter, revocation, successor and its issuance).
    func agentReports() async throws -> [AgentReportRow]

    func appendAudit(_ entry: AuditEntry) async throws
    func auditEvents(afterID: Int64, limit: Int) async throws -> [AuditRecord]

    /// Every audit row with its chain fields, and the recorded head, for `AuditChain.verify`.
    func auditChain() async throws -> (rows: [AuditChain.Row], head: (id: Int64, hash: [UInt8])?)

    /// The recorded head of the audit chain (last row's id and hash); nil if its record is missing.
    func auditHead() async throws -> (id: Int64, hash: [UInt8])?
    /// Audit rows with an id above `afterID`, in order, with their chain fields.
    func auditChainRows(afterID: Int64) async throws -> [AuditChain.Row]
    /// Appends a signed checkpoint of the audit head (checkpoints are never changed or removed).
    func appendAuditCheckpoint(_ checkpoint: AuditCheckpoint) async throws
    /// Every stored checkpoint, oldest first.
    func auditCheckpoints() async throws -> [AuditCheckpoint]
    func latestAuditCheckpoint() async throws -> AuditCheckpoint?

    /// Reads from the database, waiting no longer than a request would for it; throws
    /// `AuthorityError(.unavailable)` (its cause says why) when the database cannot answer.
    func checkAvailable() async throws
    /// The bytes the database takes on disk, for the `vouch_ca_database_bytes` gauge.
    func databaseSize() async throws -> Int
}

extension AuthorityStore {
    /// `rolloverCounts` with the default admin IDs (under `/vouch/`).
    public func rolloverCounts(rootID: Int64, generation: Int64, now: Date) async throws -> RolloverCounts {
        try await rolloverCounts(rootID: rootID, generation: generation, now: now, adminIDs: [])
    }
}
