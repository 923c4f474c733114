import Foundation
import GRDB
import VouchAuthority

/// The authority's state in one SQLite file: WAL, synchronous=FULL, so a
/// certificate acknowledged to a client survives a crash or power loss.
public final class SQLiteAuthorityStore: AuthorityStore {
    let pool: DatabasePool
    /// Every write goes through group commit: concurrent writes share a transaction.
    let writer: GroupCommitWriter

    /// Opens (creating if needed, mode 0600) and migrates the database at `path`.
    public init(path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            if fd >= 0 { close(fd) }
        }
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.executeCached(sql: "PRAGMA synchronous = FULL")
        }
        configuration.busyMode = .timeout(10)
        configuration.maximumReaderCount = 4
        pool = try DatabasePool(path: path, configuration: configuration)
        try Schema.migrator.migrate(pool)
        writer = GroupCommitWriter(pool: pool)
    }

    // MARK: Tokens

    public func insertToken(_ token: TokenRecord, audit: AuditEntry) async throws {
        try await writer.write { db in
            try db.executeCached(sql: """
                INSERT INTO token (id, secret_hash, spiffe_id, dns_names, ip_addresses, created_at, expires_at,
                                   uses_allowed, uses_consumed, revoked)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [token.id, Data(token.secretHash), token.spiffeID, Self.list(token.dnsNames),
                                 Self.list(token.ipAddresses), token.createdAt.timeIntervalSince1970,
                                 token.expiresAt.timeIntervalSince1970, token.usesAllowed, token.usesConsumed, token.revoked])
            try Self.append(audit, in: db)
        }
    }

    public func token(id: String) async throws -> TokenRecord? {
        try await pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM token WHERE id = ?"), arguments: [id]).map(Self.token)
        }
    }

    public func listTokens() async throws -> [TokenRecord] {
        try await pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM token ORDER BY created_at DESC, id")).map(Self.token)
        }
    }

    public func revokeToken(id: String, audit: AuditEntry) async throws -> Bool {
        try await writer.write { db in
            try db.executeCached(sql: "UPDATE token SET revoked = 1 WHERE id = ?", arguments: [id])
            guard db.changesCount > 0 else { return false }
            try Self.append(audit, in: db)
            return true
        }
    }

    // MARK: Certificates

    public func recordEnrollment(tokenID: String, now: Date, certificate: CertificateRecord, audit: [AuditEntry]) async throws {
        try await writer.write { db in
            // The use is consumed only if the token is still usable inside this transaction:
            // two concurrent enrollments with a single-use token cannot both pass.
            try db.executeCached(sql: """
                UPDATE token SET uses_consumed = uses_consumed + 1
                WHERE id = ? AND revoked = 0 AND expires_at > ? AND uses_consumed < uses_allowed
                """, arguments: [tokenID, now.timeIntervalSince1970])
            guard db.changesCount == 1 else {
                throw AuthorityError(.unauthenticated, "enrollment token \(tokenID) was already used")
            }
            try Self.insert(certificate, in: db)
            for entry in audit { try Self.append(entry, in: db) }
        }
    }

    public func recordRenewal(certificate: CertificateRecord, previousSerial: String, replacing: String?,
                              at time: Date, budget: RevocationBudget?, audit: [AuditEntry]) async throws -> RevocationRecord? {
        try await writer.write { db in
            let refusal = AuthorityError(.failedPrecondition, "certificate \(previousSerial) was renewed or revoked meanwhile; "
                + "only the newest certificate of a lineage can renew", reason: .certificateSuperseded)
            // A retry replaces the only child, and only while that child is live and has not renewed:
            // checked here, in the transaction, so the child cannot renew in between.
            if let replacing {
                let replaceable = try Bool.fetchOne(db.cachedStatement(sql: """
                    SELECT count(*) = 1 FROM certificate c
                    WHERE c.serial = ? AND c.superseded_by IS NULL
                      AND NOT EXISTS (SELECT 1 FROM revocation r WHERE r.serial = c.serial)
                      AND (SELECT count(*) FROM certificate WHERE renewed_from = ?) = 1
                    """), arguments: [replacing, previousSerial]) ?? false
                guard replaceable else { throw refusal }
                if let budget { try budget.check(made: Self.revocationsMade(within: budget, in: db), adding: 1) }
            }
            try Self.insert(certificate, in: db)
            // Conditional on what the authority saw: a concurrent renewal or revocation of the
            // previous certificate since then makes this one change nothing, and it is refused.
            try db.executeCached(sql: """
                UPDATE certificate SET superseded_by = ?
                WHERE serial = ? AND superseded_by IS ?
                  AND NOT EXISTS (SELECT 1 FROM revocation WHERE revocation.serial = certificate.serial)
                """, arguments: [certificate.serial, previousSerial, replacing])
            guard db.changesCount == 1 else { throw refusal }
            for entry in audit { try Self.append(entry, in: db) }
            guard let replacing else { return nil }
            try db.executeCached(sql: "INSERT OR IGNORE INTO revocation (serial, reason, revoked_at) VALUES (?, ?, ?)",
                                 arguments: [replacing, RevocationReason.superseded.rawValue, time.timeIntervalSince1970])
            return try Row.fetchOne(db.cachedStatement(sql: Self.revocationSQL + " WHERE r.serial = ?"), arguments: [replacing])
                .map(Self.revocation)
        }
    }

    public func insertCertificate(_ certificate: CertificateRecord, audit: AuditEntry) async throws {
        try await writer.write { db in
            try Self.insert(certificate, in: db)
            try Self.append(audit, in: db)
        }
    }

    static let certificateColumns = """
        c.*, r.reason AS revocation_reason, r.revoked_at AS revoked_at
        FROM certificate c LEFT JOIN revocation r ON r.serial = c.serial
        """

    public func certificate(serial: String) async throws -> CertificateRecord? {
        try await pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT \(Self.certificateColumns) WHERE c.serial = ?"), arguments: [serial])
                .map(Self.certificate)
        }
    }

    public func listCertificates(_ query: CertificateQuery) async throws -> [CertificateRecord] {
        var (filter, arguments) = Self.filter(query)
        _ = arguments.append(contentsOf: [query.limit])
        let sql = "SELECT \(Self.certificateColumns) \(filter) ORDER BY c.id DESC LIMIT ?"
        let finalArguments = arguments
        return try await pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: sql), arguments: finalArguments).map(Self.certificate)
        }
    }

    public func countCertificates(_ query: CertificateQuery) async throws -> Int {
        let (filter, arguments) = Self.filter(query)
        let sql = "SELECT count(*) FROM certificate c LEFT JOIN revocation r ON r.serial = c.serial \(filter)"
        return try await pool.read { db in
            try Int.fetchOne(db.cachedStatement(sql: sql), arguments: arguments) ?? 0
        }
    }

    /// The WHERE clause of a certificate query; every condition can use an index.
    static func filter(_ query: CertificateQuery) -> (String, StatementArguments) {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        let now = query.now.timeIntervalSince1970
        if let glob = query.identityGlob, !glob.isEmpty {
            conditions.append("c.spiffe_id GLOB ?")
            _ = arguments.append(contentsOf: [glob])
        }
        switch query.status {
        case .active?:
            conditions.append("r.serial IS NULL AND c.not_after > ?")
            _ = arguments.append(contentsOf: [now])
        case .revoked?:
            conditions.append("r.serial IS NOT NULL")
        case .expired?:
            conditions.append("r.serial IS NULL AND c.not_after <= ?")
            _ = arguments.append(contentsOf: [now])
        case nil:
            break
        }
        if let within = query.expiringWithin {
            conditions.append("c.not_after > ? AND c.not_after <= ?")
            _ = arguments.append(contentsOf: [now, now + within])
        }
        if let before = query.beforeID {
            conditions.append("c.id < ?")
            _ = arguments.append(contentsOf: [before])
        }
        return (conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "), arguments)
    }

    // MARK: Revocations

    public func revoke(serial: String, reason: Int, at time: Date, withRenewals: Bool, budget: RevocationBudget?,
                       audit: @Sendable @escaping (_ serial: String, _ spiffeID: String) -> AuditEntry) async throws -> [RevocationRecord] {
        try await writer.write { db in
            guard let spiffeID = try String.fetchOne(db.cachedStatement(sql: "SELECT spiffe_id FROM certificate WHERE serial = ?"),
                                                     arguments: [serial]) else { return [] }
            // Inside the transaction, so a renewal committed a moment ago is part of the lineage.
            let lineage = withRenewals ? try Self.renewals(of: serial, in: db) : []
            if let budget {
                var adding = 0
                for (target, _) in [(serial, spiffeID)] + lineage {
                    adding += try Bool.fetchOne(db.cachedStatement(sql: "SELECT NOT EXISTS (SELECT 1 FROM revocation WHERE serial = ?)"),
                                                arguments: [target]) == true ? 1 : 0
                }
                try budget.check(made: Self.revocationsMade(within: budget, in: db), adding: adding)
            }
            var records: [RevocationRecord] = []
            for (target, targetID) in [(serial, spiffeID)] + lineage {
                try db.executeCached(sql: "INSERT OR IGNORE INTO revocation (serial, reason, revoked_at) VALUES (?, ?, ?)",
                                     arguments: [target, reason, time.timeIntervalSince1970])
                if db.changesCount > 0 { try Self.append(audit(target, targetID), in: db) }
                if let record = try Row.fetchOne(db.cachedStatement(sql: Self.revocationSQL + " WHERE r.serial = ?"), arguments: [target])
                    .map(Self.revocation) { records.append(record) }
            }
            return records
        }
    }

    /// Revocations `budget`'s identity caused within its window, as its audit rows record them.
    static func revocationsMade(within budget: RevocationBudget, in db: Database) throws -> Int {
        let placeholders = Array(repeating: "?", count: budget.actions.count).joined(separator: ", ")
        let arguments: [any DatabaseValueConvertible] = [budget.actor] + budget.actions.map(\.rawValue) + [budget.since.timeIntervalSince1970]
        return try Int.fetchOne(db.cachedStatement(sql: "SELECT count(*) FROM audit_event WHERE actor = ? AND action IN (\(placeholders)) AND time >= ?"),
                                arguments: StatementArguments(arguments)) ?? 0
    }

    public func renewals(of serial: String) async throws -> [String] {
        try await pool.read { db in try Self.renewals(of: serial, in: db).map(\.serial) }
    }

    /// Every certificate renewed from `serial`, transitively, in issuance order, with its SPIFFE ID.
    static func renewals(of serial: String, in db: Database) throws -> [(serial: String, spiffeID: String)] {
        try Row.fetchAll(db.cachedStatement(sql: """
            WITH RECURSIVE line(serial) AS (
                SELECT serial FROM certificate WHERE renewed_from = ?
                UNION SELECT c.serial FROM certificate c JOIN line ON c.renewed_from = line.serial
            )
            SELECT c.serial, c.spiffe_id FROM certificate c JOIN line ON line.serial = c.serial ORDER BY c.id
            """), arguments: [serial]).map { (serial: $0["serial"], spiffeID: $0["spiffe_id"]) }
    }

    static let revocationSQL = """
        SELECT r.sequence, r.serial, r.reason, r.revoked_at, c.spiffe_id, c.not_after, c.issuer_id
        FROM revocation r JOIN certificate c ON c.serial = r.serial
        """

    public func revocations(afterSequence: Int64) async throws -> [RevocationRecord] {
        try await pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: Self.revocationSQL + " WHERE r.sequence > ? ORDER BY r.sequence"), arguments: [afterSequence])
                .map(Self.revocation)
        }
    }

    // MARK: Audit

    public func appendAudit(_ entry: AuditEntry) async throws {
        try await writer.write { db in try Self.append(entry, in: db) }
    }

    public func auditEvents(afterID: Int64, limit: Int) async throws -> [AuditRecord] {
        try await pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM audit_event WHERE id > ? ORDER BY id LIMIT ?"), arguments: [afterID, limit])
                .map { row in AuditRecord(id: row["id"], entry: Self.auditEntry(row)) }
        }
    }

    public func auditChain() async throws -> (rows: [AuditChain.Row], head: (id: Int64, hash: [UInt8])?) {
        try await pool.read { db in
            let rows = try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM audit_event ORDER BY id")).map { row in
                AuditChain.Row(id: row["id"], entry: Self.auditEntry(row),
                               previousHash: Array((row["prev_hash"] as Data?) ?? Data()), hash: Array((row["hash"] as Data?) ?? Data()))
            }
            let head = try Row.fetchOne(db.cachedStatement(sql: "SELECT last_id, last_hash FROM audit_head WHERE id = 1")).map { row in
                (id: row["last_id"] as Int64, hash: Array(row["last_hash"] as Data))
            }
            return (rows, head)
        }
    }

    public func auditHead() async throws -> (id: Int64, hash: [UInt8])? {
        try await pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT last_id, last_hash FROM audit_head WHERE id = 1")).map { row in
                (id: row["last_id"] as Int64, hash: Array(row["last_hash"] as Data))
            }
        }
    }

    public func auditChainRows(afterID: Int64) async throws -> [AuditChain.Row] {
        try await pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM audit_event WHERE id > ? ORDER BY id"), arguments: [afterID]).map { row in
                AuditChain.Row(id: row["id"], entry: Self.auditEntry(row),
                               previousHash: Array((row["prev_hash"] as Data?) ?? Data()), hash: Array((row["hash"] as Data?) ?? Data()))
            }
        }
    }

    public func appendAuditCheckpoint(_ checkpoint: AuditCheckpoint) async throws {
        try await writer.write { db in
            try db.executeCached(sql: "INSERT INTO audit_checkpoint (row_id, hash, time, signer, signature) VALUES (?, ?, ?, ?, ?)",
                                 arguments: [checkpoint.rowID, Data(checkpoint.hash), Int64(checkpoint.time.timeIntervalSince1970),
                                             checkpoint.signer, Data(checkpoint.signature)])
        }
    }

    public func auditCheckpoints() async throws -> [AuditCheckpoint] {
        try await pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM audit_checkpoint ORDER BY id")).map(Self.auditCheckpoint)
        }
    }

    public func latestAuditCheckpoint() async throws -> AuditCheckpoint? {
        try await pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM audit_checkpoint ORDER BY id DESC LIMIT 1")).map(Self.auditCheckpoint)
        }
    }

    static func auditCheckpoint(_ row: Row) -> AuditCheckpoint {
        AuditCheckpoint(rowID: row["row_id"], hash: Array(row["hash"] as Data), time: Date(timeIntervalSince1970: Double(row["time"] as Int64)),
                        signer: row["signer"], signature: Array(row["signature"] as Data))
    }

    // MARK: Row mapping

    /// Appends to the hash chain inside the caller's transaction, so concurrent writers cannot fork it.
    static func append(_ entry: AuditEntry, in db: Database) throws {
        let previous = try Data.fetchOne(db.cachedStatement(sql: "SELECT last_hash FROM audit_head WHERE id = 1")).map(Array.init) ?? AuditChain.genesis
        let hash = AuditChain.hash(previous: previous, entry: entry)
        try db.executeCached(sql: """
            INSERT INTO audit_event (time, actor, action, subject, peer, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [entry.time.timeIntervalSince1970, entry.actor, entry.action, entry.subject, entry.peer, entry.detail,
                             Data(previous), Data(hash)])
        try db.executeCached(sql: "UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1", arguments: [db.lastInsertedRowID, Data(hash)])
    }

    static func auditEntry(_ row: Row) -> AuditEntry {
        AuditEntry(time: Date(timeIntervalSince1970: row["time"]), actor: row["actor"], recordedAction: row["action"],
                   subject: row["subject"], peer: row["peer"], detail: row["detail"])
    }

    static func insert(_ c: CertificateRecord, in db: Database) throws {
        try db.executeCached(sql: """
            INSERT INTO certificate (serial, spiffe_id, dns_names, ip_addresses, not_before, not_after, issued_at, der,
                                     renewed_from, token_id, issuer_id)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [c.serial, c.spiffeID, list(c.dnsNames), list(c.ipAddresses), c.notBefore.timeIntervalSince1970,
                             c.notAfter.timeIntervalSince1970, c.issuedAt.timeIntervalSince1970, Data(c.der),
                             c.renewedFrom, c.tokenID, c.issuerID])
    }

    static func list(_ values: [String]) -> String { values.joined(separator: ",") }
    static func unlist(_ text: String) -> [String] { text.isEmpty ? [] : text.components(separatedBy: ",") }

    static func token(_ row: Row) -> TokenRecord {
        TokenRecord(id: row["id"], secretHash: Array(row["secret_hash"] as Data), spiffeID: row["spiffe_id"],
                    dnsNames: unlist(row["dns_names"]), ipAddresses: unlist(row["ip_addresses"]),
                    createdAt: Date(timeIntervalSince1970: row["created_at"]),
                    expiresAt: Date(timeIntervalSince1970: row["expires_at"]),
                    usesAllowed: row["uses_allowed"], usesConsumed: row["uses_consumed"], revoked: row["revoked"])
    }

    static func certificate(_ row: Row) -> CertificateRecord {
        let revokedAt: Double? = row["revoked_at"]
        return CertificateRecord(
            id: row["id"], serial: row["serial"], spiffeID: row["spiffe_id"], dnsNames: unlist(row["dns_names"]),
            ipAddresses: unlist(row["ip_addresses"]), notBefore: Date(timeIntervalSince1970: row["not_before"]),
            notAfter: Date(timeIntervalSince1970: row["not_after"]), issuedAt: Date(timeIntervalSince1970: row["issued_at"]),
            der: Array(row["der"] as Data), renewedFrom: row["renewed_from"], supersededBy: row["superseded_by"],
            tokenID: row["token_id"], revokedAt: revokedAt.map(Date.init(timeIntervalSince1970:)),
            revocationReason: row["revocation_reason"], issuerID: row["issuer_id"])
    }

    static func revocation(_ row: Row) -> RevocationRecord {
        RevocationRecord(sequence: row["sequence"], serial: row["serial"], reason: row["reason"],
                         revokedAt: Date(timeIntervalSince1970: row["revoked_at"]), spiffeID: row["spiffe_id"],
                         notAfter: Date(timeIntervalSince1970: row["not_after"]), issuerID: row["issuer_id"])
    }
}

extension Database {
    /// Executes a statement compiled once per connection and then reused (GRDB's statement cache).
    func executeCached(sql: String, arguments: StatementArguments = []) throws {
        try cachedStatement(sql: sql).execute(arguments: arguments)
    }
}
