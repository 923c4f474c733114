import Foundation
import GRDB
import VouchAuthority

/// Versioned schema. Migrations are append-only: a released one is never edited.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE certificate (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    serial TEXT NOT NULL UNIQUE,
                    spiffe_id TEXT NOT NULL,
                    dns_names TEXT NOT NULL,
                    ip_addresses TEXT NOT NULL,
                    not_before REAL NOT NULL,
                    not_after REAL NOT NULL,
                    issued_at REAL NOT NULL,
                    der BLOB NOT NULL,
                    renewed_from TEXT,
                    superseded_by TEXT,
                    token_id TEXT
                );
                CREATE INDEX certificate_not_after ON certificate(not_after);
                CREATE INDEX certificate_spiffe_id ON certificate(spiffe_id);

                CREATE TABLE revocation (
                    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                    serial TEXT NOT NULL UNIQUE REFERENCES certificate(serial),
                    reason INTEGER NOT NULL,
                    revoked_at REAL NOT NULL
                );

                CREATE TABLE token (
                    id TEXT PRIMARY KEY,
                    secret_hash BLOB NOT NULL,
                    spiffe_id TEXT NOT NULL,
                    dns_names TEXT NOT NULL,
                    ip_addresses TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    expires_at REAL NOT NULL,
                    uses_allowed INTEGER NOT NULL,
                    uses_consumed INTEGER NOT NULL,
                    revoked INTEGER NOT NULL DEFAULT 0
                );

                CREATE TABLE audit_event (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    time REAL NOT NULL,
                    actor TEXT NOT NULL,
                    action TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    peer TEXT NOT NULL,
                    detail TEXT NOT NULL
                );

                CREATE TABLE crl_state (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    last_number INTEGER NOT NULL
                );
                INSERT INTO crl_state (id, last_number) VALUES (1, 0);
                """)
        }
        migrator.registerMigration("v2-audit-chain") { db in
            try db.execute(sql: """
                ALTER TABLE audit_event ADD COLUMN prev_hash BLOB;
                ALTER TABLE audit_event ADD COLUMN hash BLOB;
                CREATE TABLE audit_head (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    last_id INTEGER NOT NULL,
                    last_hash BLOB NOT NULL
                );
                """)
            // Chain the rows written before this migration, in order.
            var previous = AuditChain.genesis
            var lastID: Int64 = 0
            for row in try Row.fetchAll(db, sql: "SELECT * FROM audit_event ORDER BY id") {
                let hash = AuditChain.hash(previous: previous, entry: SQLiteAuthorityStore.auditEntry(row))
                try db.execute(sql: "UPDATE audit_event SET prev_hash = ?, hash = ? WHERE id = ?",
                               arguments: [Data(previous), Data(hash), row["id"] as Int64])
                previous = hash
                lastID = row["id"]
            }
            try db.execute(sql: "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, ?, ?)", arguments: [lastID, Data(previous)])
        }
        migrator.registerMigration("v3-audit-checkpoint") { db in
            // Signed checkpoints of the audit head (AuditCheckpoint). Append-only: the triggers stop
            // accidental edits; deliberate ones are caught by the signature.
            try db.execute(sql: """
                CREATE TABLE audit_checkpoint (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    row_id INTEGER NOT NULL,
                    hash BLOB NOT NULL,
                    time INTEGER NOT NULL,
                    signer TEXT NOT NULL,
                    signature BLOB NOT NULL
                );
                CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
                BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
                CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
                BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
                """)
        }
        migrator.registerMigration("v4-lineage") { db in
            // Lineage revocation walks renewed_from; the self-revocation limit counts an actor's audit rows.
            try db.execute(sql: """
                CREATE INDEX certificate_renewed_from ON certificate(renewed_from);
                CREATE INDEX audit_event_actor_action_time ON audit_event(actor, action, time);
                """)
        }
        migrator.registerMigration("v5-issuers") { db in
            // Several issuers in one database (Issuers.swift). Certificates without an issuer are the
            // initial intermediate's, so rows written by a replica not upgraded yet stay right.
            try db.execute(sql: """
                CREATE TABLE issuer (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    kind TEXT NOT NULL CHECK (kind IN ('root', 'intermediate', 'cross', 'endorsement')),
                    state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retiring', 'retired')),
                    parent_id INTEGER REFERENCES issuer(id),
                    subject_id INTEGER REFERENCES issuer(id),
                    serial TEXT NOT NULL UNIQUE,
                    der BLOB NOT NULL,
                    not_before REAL NOT NULL,
                    not_after REAL NOT NULL,
                    key_ref TEXT NOT NULL,
                    key_pem TEXT,
                    crl_number INTEGER NOT NULL DEFAULT 0,
                    created_generation INTEGER NOT NULL,
                    created_at REAL NOT NULL,
                    changed_at REAL NOT NULL
                );
                CREATE UNIQUE INDEX issuer_one_active ON issuer(kind) WHERE state = 'active' AND kind IN ('root', 'intermediate');
                CREATE TABLE issuer_state (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    generation INTEGER NOT NULL
                );
                INSERT INTO issuer_state (id, generation) VALUES (1, 0);
                ALTER TABLE certificate ADD COLUMN issuer_id INTEGER REFERENCES issuer(id);
                CREATE INDEX certificate_issuer_not_after ON certificate(issuer_id, not_after);
                CREATE TABLE trust_confirmation (
                    serial TEXT PRIMARY KEY REFERENCES certificate(serial),
                    spiffe_id TEXT NOT NULL,
                    generation INTEGER NOT NULL,
                    bundle_sha256 BLOB NOT NULL,
                    confirmed_at REAL NOT NULL,
                    peer TEXT NOT NULL
                );
                """)
        }
        migrator.registerMigration("v6-root-crl") { db in
            // A root's CRL, signed offline where its key is in hand (RootCRL.swift), and the
            // revocation of an intermediate or cross certificate by its root. Nullable: instant.
            try db.execute(sql: """
                ALTER TABLE issuer ADD COLUMN crl_der BLOB;
                ALTER TABLE issuer ADD COLUMN crl_next_update REAL;
                ALTER TABLE issuer ADD COLUMN revoked_at REAL;
                ALTER TABLE issuer ADD COLUMN revocation_reason INTEGER;
                """)
        }
        migrator.registerMigration("v7-agent-report") { db in
            // Each agent's latest report (the fleet view), keyed by its lineage: the serial at the
            // root of its renewed_from chain. A report from a renewed certificate finds its row by
            // caller_serial = the certificate it was renewed from. Times the agent sent are its
            // Unix seconds; first_seen and reported_at are the CA's.
            try db.execute(sql: """
                CREATE TABLE agent_report (
                    lineage TEXT PRIMARY KEY REFERENCES certificate(serial),
                    caller_serial TEXT NOT NULL REFERENCES certificate(serial),
                    spiffe_id TEXT NOT NULL,
                    serving_serial TEXT NOT NULL,
                    serving_not_after INTEGER NOT NULL,
                    trust_generation INTEGER NOT NULL,
                    bundle_sha256 BLOB NOT NULL,
                    root_serials TEXT NOT NULL,
                    last_rotation INTEGER NOT NULL,
                    last_error TEXT NOT NULL,
                    last_error_at INTEGER NOT NULL,
                    rotations INTEGER NOT NULL,
                    failures INTEGER NOT NULL,
                    agent_version TEXT NOT NULL,
                    host_name TEXT NOT NULL,
                    first_seen REAL NOT NULL,
                    reported_at REAL NOT NULL,
                    peer TEXT NOT NULL
                );
                CREATE INDEX agent_report_caller_serial ON agent_report(caller_serial);
                """)
        }
        return migrator
    }
}

extension SQLiteAuthorityStore {
    /// Creates a database file whose schema stops after migration `name`, as a release before the
    /// later ones left it: for tests that an existing database upgrades in place.
    static func createDatabase(at path: String, migratedUpTo name: String) throws {
        try Schema.migrator.migrate(DatabaseQueue(path: path), upTo: name)
    }
}
