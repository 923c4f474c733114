import Foundation
import GRDB
import VouchAuthority

extension SQLiteAuthorityStore {
    /// Every row of state, read in one read transaction: one consistent snapshot even while a
    /// server writes (the WAL keeps the snapshot's pages until the read ends).
    ///
    /// Not copied: GRDB's `grdb_migrations` (schema bookkeeping; the target has its own). The
    /// failed-attempt and refusal limits live in the server's memory, not in the file.
    public func exportAll() async throws -> AuthorityStoreSnapshot {
        try await pool.read { db in
            let certificates = try Row.fetchAll(db, sql: "SELECT * FROM certificate ORDER BY id").map(Self.certificate)
            let tokens = try Row.fetchAll(db, sql: "SELECT * FROM token ORDER BY id").map(Self.token)
            let revocations = try Row.fetchAll(db, sql: "SELECT * FROM revocation ORDER BY sequence").map { row in
                AuthorityStoreSnapshot.Revocation(sequence: row["sequence"], serial: row["serial"], reason: row["reason"],
                                                  revokedAt: Date(timeIntervalSince1970: row["revoked_at"]))
            }
            let events = try Row.fetchAll(db, sql: "SELECT * FROM audit_event ORDER BY id").map { row in
                AuditChain.Row(id: row["id"], entry: Self.auditEntry(row),
                               previousHash: Array((row["prev_hash"] as Data?) ?? Data()), hash: Array((row["hash"] as Data?) ?? Data()))
            }
            let head = try Row.fetchOne(db, sql: "SELECT last_id, last_hash FROM audit_head WHERE id = 1").map { row in
                AuthorityStoreSnapshot.AuditHead(id: row["last_id"], hash: Array(row["last_hash"] as Data))
            }
            let checkpoints = try Row.fetchAll(db, sql: "SELECT * FROM audit_checkpoint ORDER BY id").map { row in
                AuthorityStoreSnapshot.Checkpoint(id: row["id"], checkpoint: Self.auditCheckpoint(row))
            }
            let crlNumber = try Int64.fetchOne(db, sql: "SELECT last_number FROM crl_state WHERE id = 1") ?? 0
            let issuers = try Self.issuerSnapshot(in: db)
            let confirmations = try Row.fetchAll(db, sql: "SELECT * FROM trust_confirmation ORDER BY serial").map(Self.trustConfirmation)
            let agentReports = try Row.fetchAll(db, sql: "SELECT * FROM agent_report ORDER BY lineage").map(Self.agentReport)
            // AUTOINCREMENT never reuses an id, even one whose row is gone: sqlite_sequence holds the
            // highest ever given, which the copy's counters must pass too.
            var counters: [String: Int64] = [
                "certificate": certificates.last?.id ?? 0, "revocation": revocations.last?.sequence ?? 0,
                "audit_event": events.last?.id ?? 0, "audit_checkpoint": checkpoints.last?.id ?? 0,
                "issuer": issuers.issuers.last?.id ?? 0,
            ]
            for row in try Row.fetchAll(db, sql: "SELECT name, seq FROM sqlite_sequence") {
                let name: String = row["name"]
                if let current = counters[name] { counters[name] = max(current, row["seq"] as Int64) }
            }
            return AuthorityStoreSnapshot(certificates: certificates, tokens: tokens, revocations: revocations, auditEvents: events,
                                          auditHead: head, auditCheckpoints: checkpoints, crlNumber: crlNumber, idCounters: counters,
                                          issuers: issuers.issuers, issuerGeneration: issuers.generation, trustConfirmations: confirmations,
                                          agentReports: agentReports)
        }
    }

    /// The id of another process that has the database at `path` open, if one has: each SQLite
    /// connection in WAL mode holds a shared lock on the "dead man switch" byte (128) of the
    /// `-shm` file while it is open. Checked before opening it here (this process's own locks
    /// are never reported). Nil when none has, or when there is no `-shm` file.
    public static func processHoldingOpen(path: String) -> pid_t? {
        let descriptor = open(path + "-shm", O_RDONLY)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = 128
        lock.l_len = 1
        guard fcntl(descriptor, F_GETLK, &lock) == 0, lock.l_type != Int16(F_UNLCK) else { return nil }
        return lock.l_pid
    }
}
