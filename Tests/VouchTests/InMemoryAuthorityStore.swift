import Foundation
import Synchronization
@testable import VouchAuthority

/// An `AuthorityStore` in process memory: every method runs under one lock, so each is a
/// transaction, and a refused one changes nothing. Nothing survives the process; it exists
/// so the authority's rules can be tested in milliseconds, and it must pass the same
/// contract tests as the durable stores.
public final class InMemoryAuthorityStore: AuthorityStore {
    private struct State {
        var tokens: [String: TokenRecord] = [:]
        var certificates: [CertificateRecord] = []
        var indexBySerial: [String: Int] = [:]
        var revocations: [RevocationRecord] = []
        var crlNumber: Int64 = 0
        var audit: [AuditChain.Row] = []
        var head: (id: Int64, hash: [UInt8]) = (0, AuditChain.genesis)
        var checkpoints: [AuditCheckpoint] = []
        var issuers: [IssuerRecord] = []
        var generation: Int64 = 0
        var confirmations: [String: TrustConfirmation] = [:]
        var agentReports: [String: AgentReportRow] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    // MARK: Tokens

    public func insertToken(_ token: TokenRecord, audit: AuditEntry) async throws {
        try state.withLock { state in
            guard state.tokens[token.id] == nil else { throw AuthorityError(.internal, "token \(token.id) exists") }
            state.tokens[token.id] = token
            Self.append(audit, to: &state)
        }
    }

    public func token(id: String) async throws -> TokenRecord? {
        state.withLock { $0.tokens[id] }
    }

    public func listTokens() async throws -> [TokenRecord] {
        state.withLock { state in
            state.tokens.values.sorted { ($0.createdAt, $1.id) > ($1.createdAt, $0.id) }
        }
    }

    public func revokeToken(id: String, audit: AuditEntry) async throws -> Bool {
        state.withLock { state in
            guard state.tokens[id] != nil else { return false }
            state.tokens[id]?.revoked = true
            Self.append(audit, to: &state)
            return true
        }
    }

    // MARK: Certificates

    public func recordEnrollment(tokenID: String, now: Date, certificate: CertificateRecord, audit: [AuditEntry]) async throws {
        try state.withLock { state in
            guard let token = state.tokens[tokenID], !token.revoked, token.expiresAt > now, token.usesConsumed < token.usesAllowed else {
                throw AuthorityError(.unauthenticated, "enrollment token \(tokenID) was already used")
            }
            try Self.insert(certificate, into: &state)
            state.tokens[tokenID]?.usesConsumed += 1
            for entry in audit { Self.append(entry, to: &state) }
        }
    }

    public func recordRenewal(certificate: CertificateRecord, previousSerial: String, replacing: String?,
                              at time: Date, budget: RevocationBudget?, audit: [AuditEntry]) async throws -> RevocationRecord? {
        try state.withLock { state in
            // A retry replaces the only child, and only while that child is live and has not renewed.
            let replaceable = replacing.map { child in
                state.indexBySerial[child].map { state.certificates[$0].supersededBy == nil } == true
                    && !Self.isRevoked(child, in: state) && Self.children(of: previousSerial, in: state) == 1
            } ?? true
            guard replaceable, let previous = state.indexBySerial[previousSerial], state.certificates[previous].supersededBy == replacing,
                  !Self.isRevoked(previousSerial, in: state) else {
                throw AuthorityError(.failedPrecondition, "certificate \(previousSerial) was renewed or revoked meanwhile; "
                    + "only the newest certificate of a lineage can renew", reason: .certificateSuperseded)
            }
            if replacing != nil, let budget { try budget.check(made: Self.revocationsMade(within: budget, in: state), adding: 1) }
            try Self.insert(certificate, into: &state)
            state.certificates[previous].supersededBy = certificate.serial
            for entry in audit { Self.append(entry, to: &state) }
            guard let replacing else { return nil }
            return Self.revoke(replacing, reason: RevocationReason.superseded.rawValue, at: time, in: &state)
        }
    }

    public func insertCertificate(_ certificate: CertificateRecord, audit: AuditEntry) async throws {
        try state.withLock { state in
            try Self.insert(certificate, into: &state)
            Self.append(audit, to: &state)
        }
    }

    public func certificate(serial: String) async throws -> CertificateRecord? {
        state.withLock { state in state.indexBySerial[serial].map { Self.withRevocation(state.certificates[$0], in: state) } }
    }

    public func listCertificates(_ query: CertificateQuery) async throws -> [CertificateRecord] {
        state.withLock { state in Array(Self.matching(query, in: state).prefix(query.limit)) }
    }

    public func countCertificates(_ query: CertificateQuery) async throws -> Int {
        state.withLock { state in Self.matching(query, in: state).count }
    }

    // MARK: Revocations

    public func revoke(serial: String, reason: Int, at time: Date, withRenewals: Bool, budget: RevocationBudget?,
                       audit: @escaping @Sendable (_ serial: String, _ spiffeID: String) -> AuditEntry) async throws -> [RevocationRecord] {
        try state.withLock { state in
            guard state.indexBySerial[serial] != nil else { return [] }
            let lineage = withRenewals ? Self.renewals(of: serial, in: state) : []
            if let budget {
                let adding = ([serial] + lineage).filter { !Self.isRevoked($0, in: state) }.count
                try budget.check(made: Self.revocationsMade(within: budget, in: state), adding: adding)
            }
            var records: [RevocationRecord] = []
            for target in [serial] + lineage {
                let newlyRevoked = !Self.isRevoked(target, in: state)
                guard let record = Self.revoke(target, reason: reason, at: time, in: &state) else { continue }
                records.append(record)
                if newlyRevoked { Self.append(audit(target, record.spiffeID), to: &state) }
            }
            return records
        }
    }

    public func renewals(of serial: String) async throws -> [String] {
        state.withLock { Self.renewals(of: serial, in: $0) }
    }

    public func revocations(afterSequence: Int64) async throws -> [RevocationRecord] {
        revocationReads.withLock { $0 += 1 }
        // Time as a database read takes, so concurrent readers overlap.
        try await Task.sleep(for: .milliseconds(20))
        return state.withLock { $0.revocations.filter { $0.sequence > afterSequence } }
    }

    /// How many times `revocations(afterSequence:)` was read.
    public let revocationReads = Mutex(0)

    // MARK: Issuers

    public func adoptInitialIssuers(root: IssuerRecord, intermediate: IssuerRecord) async throws -> IssuerSnapshot {
        state.withLock { state in
            if state.issuers.isEmpty {
                state.generation = 1
                var root = root, intermediate = intermediate
                (root.id, root.state, root.parentID, root.subjectID, root.crlNumber, root.createdGeneration) = (1, .active, nil, nil, 0, 1)
                (intermediate.id, intermediate.state, intermediate.parentID, intermediate.subjectID) = (2, .active, 1, nil)
                (intermediate.crlNumber, intermediate.createdGeneration) = (state.crlNumber, 1)
                state.issuers = [root, intermediate]
                for index in state.certificates.indices where state.certificates[index].issuerID == nil {
                    state.certificates[index].issuerID = intermediate.id
                }
                for index in state.revocations.indices where state.revocations[index].issuerID == nil {
                    state.revocations[index].issuerID = intermediate.id
                }
            }
            return IssuerSnapshot(generation: state.generation, issuers: state.issuers)
        }
    }

    public func issuers() async throws -> IssuerSnapshot {
        state.withLock { IssuerSnapshot(generation: $0.generation, issuers: $0.issuers) }
    }

    public func issuerGeneration() async throws -> Int64 {
        state.withLock { $0.generation }
    }

    public func changeIssuers(_ change: IssuerChange, expectedGeneration: Int64, audit: [AuditEntry]) async throws -> Int64 {
        try change.validate()
        return try state.withLock { state in
            guard state.generation == expectedGeneration else {
                throw AuthorityError(.failedPrecondition, IssuerChange.staleGenerationMessage)
            }
            // Applied to a copy, so a refusal changes nothing.
            var issuers = state.issuers
            let generation = state.generation + 1
            let now = audit.first?.time ?? Date()
            let highestCRLNumber = max(state.crlNumber, issuers.map(\.crlNumber).max() ?? 0)
            for update in change.orderedUpdates {
                guard let index = issuers.firstIndex(where: { $0.id == update.id }) else {
                    throw AuthorityError(.notFound, "no issuer \(update.id)")
                }
                try Self.checkSingleActive(issuers[index], becoming: update.state, among: issuers)
                if update.state == .active, issuers[index].state != .active, issuers[index].kind == .intermediate {
                    issuers[index].crlNumber = max(issuers[index].crlNumber, highestCRLNumber)
                }
                issuers[index].state = update.state
                issuers[index].changedAt = now
            }
            var insertedIDs: [Int64] = []
            func resolve(_ reference: IssuerChange.Reference?) throws -> Int64? {
                switch reference {
                case .id(let id)?:
                    guard issuers.contains(where: { $0.id == id }) else { throw AuthorityError(.notFound, "no issuer \(id)") }
                    return id
                case .inserted(let index)?: return insertedIDs[index]
                case nil: return nil
                }
            }
            for insert in change.inserts {
                guard !issuers.contains(where: { $0.serial == insert.record.serial }) else {
                    throw AuthorityError(.failedPrecondition, "issuer \(insert.record.serial) exists")
                }
                var record = insert.record
                try Self.checkSingleActive(record, becoming: record.state, among: issuers)
                record.id = (issuers.map(\.id).max() ?? 0) + 1
                record.parentID = try resolve(insert.parent)
                record.subjectID = try resolve(insert.subject)
                record.createdGeneration = generation
                record.crlNumber = record.kind == .intermediate && record.state == .active ? highestCRLNumber : 0
                issuers.append(record)
                insertedIDs.append(record.id)
            }
            for revocation in change.revocations {
                guard let index = issuers.firstIndex(where: { $0.id == revocation.id && ($0.kind == .intermediate || $0.kind == .cross) }) else {
                    throw AuthorityError(.notFound, "no intermediate or cross certificate \(revocation.id)")
                }
                (issuers[index].revokedAt, issuers[index].revocationReason) = (revocation.at, revocation.reason)
            }
            for crl in change.rootCRLs {
                let id = try resolve(crl.root)
                guard let index = issuers.firstIndex(where: { $0.id == id && $0.kind == .root }) else {
                    throw AuthorityError(.notFound, "no root for this CRL")
                }
                guard crl.number > issuers[index].crlNumber else {
                    throw IssuerChange.staleRootCRLNumber(issuers[index].serial, number: crl.number, stored: issuers[index].crlNumber)
                }
                (issuers[index].crlDER, issuers[index].crlNumber, issuers[index].crlNextUpdate) = (crl.der, crl.number, crl.nextUpdate)
            }
            state.issuers = issuers
            state.generation = generation
            for entry in audit { Self.append(entry, to: &state) }
            return generation
        }
    }

    public func nextCRLNumberAndRevocations(issuerID: Int64) async throws -> (number: Int64, revocations: [RevocationRecord]) {
        try state.withLock { state in try Self.nextCRLNumber(issuerID: issuerID, in: &state) }
    }

    private static func nextCRLNumber(issuerID: Int64, in state: inout State) throws -> (number: Int64, revocations: [RevocationRecord]) {
        guard let index = state.issuers.firstIndex(where: { $0.id == issuerID }) else {
            throw AuthorityError(.notFound, "no issuer \(issuerID)")
        }
        let initial = state.issuers.first { $0.kind == .intermediate }?.id
        // The initial intermediate also keeps the database-wide number (used by replicas not upgraded yet).
        if issuerID == initial { state.issuers[index].crlNumber = max(state.issuers[index].crlNumber, state.crlNumber) }
        state.issuers[index].crlNumber += 1
        if issuerID == initial { state.crlNumber = state.issuers[index].crlNumber }
        return (state.issuers[index].crlNumber, state.revocations.filter { ($0.issuerID ?? initial) == issuerID })
    }

    public func recordTrustConfirmation(serial: String, spiffeID: String, generation: Int64, bundleSHA256: [UInt8],
                                        peer: String, at time: Date) async throws {
        try state.withLock { state in
            guard state.indexBySerial[serial] != nil else { throw AuthorityError(.notFound, "no certificate \(serial)") }
            if let held = state.confirmations[serial], held.generation > generation { return }
            state.confirmations[serial] = TrustConfirmation(serial: serial, spiffeID: spiffeID, generation: generation,
                                                            bundleSHA256: bundleSHA256, confirmedAt: time, peer: peer)
        }
    }

    public func trustConfirmations() async throws -> [TrustConfirmation] {
        state.withLock { $0.confirmations.values.sorted { $0.serial < $1.serial } }
    }

    public func rolloverCounts(rootID: Int64, generation: Int64, now: Date, adminIDs: Set<String>) async throws -> RolloverCounts {
        state.withLock { state in
            let live = state.certificates.filter { certificate in
                certificate.notAfter > now && certificate.supersededBy == nil && !Self.isRevoked(certificate.serial, in: state)
            }.map { certificate in
                RolloverCounts.Live(serial: certificate.serial, spiffeID: certificate.spiffeID, notAfter: certificate.notAfter,
                                    issuerID: certificate.issuerID, confirmedGeneration: state.confirmations[certificate.serial]?.generation)
            }
            return RolloverCounts.tally(live, rootID: rootID, issuers: state.issuers, generation: generation, adminIDs: adminIDs)
        }
    }

    // MARK: Agent reports

    public func recordAgentReport(_ report: AgentReportRecord, callerSerial: String, spiffeID: String, peer: String,
                                  at time: Date) async throws {
        try state.withLock { state in
            guard var index = state.indexBySerial[callerSerial] else { throw AuthorityError(.notFound, "no certificate \(callerSerial)") }
            // The lineage is the root of the renewed_from chain.
            while let parent = state.certificates[index].renewedFrom, let parentIndex = state.indexBySerial[parent] { index = parentIndex }
            let lineage = state.certificates[index].serial
            state.agentReports[lineage] = AgentReportRow(
                lineage: lineage, callerSerial: callerSerial, spiffeID: spiffeID, report: report,
                firstSeen: state.agentReports[lineage]?.firstSeen ?? time, reportedAt: time, peer: peer)
        }
    }

    public func agentReports() async throws -> [AgentReportRow] {
        state.withLock { state in
            state.agentReports.values.sorted { $0.lineage < $1.lineage }.map { stored in
                var row = stored
                row.served = state.indexBySerial[row.report.servingSerial].map { index in
                    let certificate = Self.withRevocation(state.certificates[index], in: state)
                    return ServedCertificate(notAfter: certificate.notAfter, revokedAt: certificate.revokedAt,
                                             supersededBy: certificate.supersededBy,
                                             successorIssuedAt: certificate.supersededBy.flatMap { state.indexBySerial[$0] }
                                                 .map { state.certificates[$0].issuedAt })
                }
                return row
            }
        }
    }

    // MARK: Health

    /// Memory is always there.
    public func checkAvailable() async throws {}

    public func databaseSize() async throws -> Int { 0 }

    // MARK: Audit

    public func appendAudit(_ entry: AuditEntry) async throws {
        state.withLock { Self.append(entry, to: &$0) }
    }

    private static func revocationsMade(within budget: RevocationBudget, in state: State) -> Int {
        let actions = Set(budget.actions.map(\.rawValue))
        return state.audit.filter { $0.entry.actor == budget.actor && actions.contains($0.entry.action) && $0.entry.time >= budget.since }.count
    }

    public func auditEvents(afterID: Int64, limit: Int) async throws -> [AuditRecord] {
        state.withLock { state in
            state.audit.filter { $0.id > afterID }.prefix(limit).map { AuditRecord(id: $0.id, entry: $0.entry) }
        }
    }

    public func auditChain() async throws -> (rows: [AuditChain.Row], head: (id: Int64, hash: [UInt8])?) {
        state.withLock { ($0.audit, $0.head) }
    }

    public func auditHead() async throws -> (id: Int64, hash: [UInt8])? {
        state.withLock { $0.head }
    }

    public func auditChainRows(afterID: Int64) async throws -> [AuditChain.Row] {
        state.withLock { state in state.audit.filter { $0.id > afterID } }
    }

    public func appendAuditCheckpoint(_ checkpoint: AuditCheckpoint) async throws {
        state.withLock { $0.checkpoints.append(checkpoint) }
    }

    public func auditCheckpoints() async throws -> [AuditCheckpoint] {
        state.withLock { $0.checkpoints }
    }

    public func latestAuditCheckpoint() async throws -> AuditCheckpoint? {
        state.withLock { $0.checkpoints.last }
    }

    // MARK: Inside the lock

    private static func checkSingleActive(_ issuer: IssuerRecord, becoming state: IssuerState, among issuers: [IssuerRecord]) throws {
        guard state == .active, IssuerChange.hasSingleActive(issuer.kind),
              let other = issuers.first(where: { $0.kind == issuer.kind && $0.state == .active && $0.serial != issuer.serial }) else { return }
        throw IssuerChange.secondActive(issuer.kind, serial: issuer.serial, active: other.serial)
    }

    private static func insert(_ certificate: CertificateRecord, into state: inout State) throws {
        guard state.indexBySerial[certificate.serial] == nil else {
            throw AuthorityError(.internal, "certificate \(certificate.serial) exists")
        }
        var stored = certificate
        stored.id = Int64(state.certificates.count + 1)
        stored.supersededBy = nil
        stored.revokedAt = nil
        stored.revocationReason = nil
        state.indexBySerial[certificate.serial] = state.certificates.count
        state.certificates.append(stored)
    }

    private static func append(_ entry: AuditEntry, to state: inout State) {
        let hash = AuditChain.hash(previous: state.head.hash, entry: entry)
        let id = (state.audit.last?.id ?? 0) + 1
        state.audit.append(AuditChain.Row(id: id, entry: entry, previousHash: state.head.hash, hash: hash))
        state.head = (id, hash)
    }

    private static func children(of serial: String, in state: State) -> Int {
        state.certificates.filter { $0.renewedFrom == serial }.count
    }

    private static func isRevoked(_ serial: String, in state: State) -> Bool {
        state.revocations.contains { $0.serial == serial }
    }

    /// Revokes `serial` unless it already is; returns its (first) revocation.
    private static func revoke(_ serial: String, reason: Int, at time: Date, in state: inout State) -> RevocationRecord? {
        if let existing = state.revocations.first(where: { $0.serial == serial }) { return existing }
        guard let index = state.indexBySerial[serial] else { return nil }
        let certificate = state.certificates[index]
        let record = RevocationRecord(sequence: (state.revocations.last?.sequence ?? 0) + 1, serial: serial, reason: reason,
                                      revokedAt: time, spiffeID: certificate.spiffeID, notAfter: certificate.notAfter,
                                      issuerID: certificate.issuerID)
        state.revocations.append(record)
        return record
    }

    private static func withRevocation(_ certificate: CertificateRecord, in state: State) -> CertificateRecord {
        var record = certificate
        if let revocation = state.revocations.first(where: { $0.serial == certificate.serial }) {
            record.revokedAt = revocation.revokedAt
            record.revocationReason = revocation.reason
        }
        return record
    }

    private static func renewals(of serial: String, in state: State) -> [String] {
        var line: Set<String> = [serial]
        var found: [CertificateRecord] = []
        // Certificates are in issuance order, so a renewal always comes after its parent.
        for certificate in state.certificates where certificate.renewedFrom.map(line.contains) == true {
            line.insert(certificate.serial)
            found.append(certificate)
        }
        return found.map(\.serial)
    }

    private static func matching(_ query: CertificateQuery, in state: State) -> [CertificateRecord] {
        state.certificates.reversed().map { withRevocation($0, in: state) }.filter { record in
            if let glob = query.identityGlob, !glob.isEmpty, !Glob.matches(pattern: glob, record.spiffeID) { return false }
            switch query.status {
            case .active?: if record.revokedAt != nil || record.notAfter <= query.now { return false }
            case .revoked?: if record.revokedAt == nil { return false }
            case .expired?: if record.revokedAt != nil || record.notAfter > query.now { return false }
            case nil: break
            }
            if let within = query.expiringWithin,
               !(record.notAfter > query.now && record.notAfter <= query.now.addingTimeInterval(within)) { return false }
            if let before = query.beforeID, (record.id ?? 0) >= before { return false }
            return true
        }
    }
}
