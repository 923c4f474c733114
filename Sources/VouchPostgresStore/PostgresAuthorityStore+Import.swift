import Foundation
import Logging
import PostgresNIO
import VouchAuthority

extension PostgresAuthorityStore {
    /// Copies `snapshot` (another store's `exportAll`) into this database, which must hold no
    /// state yet, in one transaction: rows keep their ids, sequence numbers, hashes and chain
    /// fields; the audit head, the checkpoints and the CRL number come along; the identity counters
    /// are moved past the copied ids, so the next certificate, revocation, audit row or checkpoint
    /// is numbered after them. Before committing, the copy is read back: its row counts must be the
    /// snapshot's and its audit chain must verify up to the snapshot's head, else nothing is kept.
    /// Throws, changing nothing, if the database has any certificate, token, revocation, audit row
    /// or checkpoint.
    public func importAll(_ snapshot: AuthorityStoreSnapshot) async throws -> AuthorityStoreSnapshot.Counts {
        try await write { [location] connection in
            // The writer lock keeps replicas' writes out; the table locks also keep out the checkpoint
            // and CRL number writes, which do not take it. Plain reads go on.
            try await connection.query("""
                LOCK TABLE certificate, revocation, token, audit_event, audit_head, audit_checkpoint, crl_state,
                           issuer, issuer_state, trust_confirmation, agent_report IN EXCLUSIVE MODE
                """, logger: logger)
            let before = try await Self.counts(on: connection, logger: logger)
            guard before == AuthorityStoreSnapshot.Counts(certificates: 0, tokens: 0, revocations: 0, auditEvents: 0, auditCheckpoints: 0)
            else {
                // Issuers alone: a server on this database adopted its CA directory's pair already.
                let issuers = before.issuers > 0 ? ", \(before.issuers) issuers" : ""
                throw PostgresStoreError(location, "the target database is not empty (\(before.certificates) certificates, "
                                         + "\(before.tokens) tokens, \(before.revocations) revocations, \(before.auditEvents) audit events, "
                                         + "\(before.auditCheckpoints) audit checkpoints\(issuers)); it was left unchanged")
            }
            try await Self.copy(snapshot, on: connection, logger: logger)
            try await Self.checkCopy(of: snapshot, on: connection, logger: logger)
            return snapshot.counts
        }
    }

    static func counts(on connection: PostgresConnection, logger: Logger) async throws -> AuthorityStoreSnapshot.Counts {
        let row = try await connection.query("""
            SELECT (SELECT count(*) FROM certificate), (SELECT count(*) FROM token), (SELECT count(*) FROM revocation),
                   (SELECT count(*) FROM audit_event), (SELECT count(*) FROM audit_checkpoint),
                   (SELECT count(*) FROM issuer), (SELECT count(*) FROM trust_confirmation), (SELECT count(*) FROM agent_report)
            """, logger: logger).collect().first
        let (certificates, tokens, revocations, events, checkpoints, issuers, confirmations, agentReports)
            = try row!.decode((Int, Int, Int, Int, Int, Int, Int, Int).self)
        return AuthorityStoreSnapshot.Counts(certificates: certificates, tokens: tokens, revocations: revocations,
                                             auditEvents: events, auditCheckpoints: checkpoints, issuers: issuers,
                                             trustConfirmations: confirmations, agentReports: agentReports)
    }

    private static func copy(_ snapshot: AuthorityStoreSnapshot, on connection: PostgresConnection, logger: Logger) async throws {
        // Each statement sends one array per column for a batch of rows (unnest makes them rows
        // again): a few statements for 100,000 rows, each with a dozen parameters. Certificates go
        // before revocations (the foreign key); every table in the order of its ids. Issuers come
        // first (certificates name them), one at a time (a few rows; a parent is always older).
        for issuer in snapshot.issuers {
            _ = try await insertIssuer(issuer, keepingID: true, on: connection, logger: logger)
        }
        try await connection.query("UPDATE issuer_state SET generation = \(snapshot.issuerGeneration) WHERE id = 1", logger: logger)
        for batch in batches(snapshot.certificates) {
            let issuerIDs = batch.map { $0.issuerID ?? 0 }, hasIssuerID = batch.map { $0.issuerID != nil }
            let (renewedFrom, hasRenewedFrom) = nullable(batch.map(\.renewedFrom))
            let (supersededBy, hasSupersededBy) = nullable(batch.map(\.supersededBy))
            let (tokenID, hasTokenID) = nullable(batch.map(\.tokenID))
            try await connection.query("""
                INSERT INTO certificate (id, serial, spiffe_id, dns_names, ip_addresses, not_before, not_after, issued_at, der,
                                         renewed_from, superseded_by, token_id, issuer_id)
                SELECT id, serial, spiffe_id, string_to_array(dns_names, ','), string_to_array(ip_addresses, ','), not_before, not_after,
                       issued_at, der, CASE WHEN has_renewed_from THEN renewed_from END,
                       CASE WHEN has_superseded_by THEN superseded_by END, CASE WHEN has_token_id THEN token_id END,
                       CASE WHEN has_issuer_id THEN issuer_id END
                FROM unnest(\(batch.map { $0.id ?? 0 })::bigint[], \(batch.map(\.serial))::text[], \(batch.map(\.spiffeID))::text[],
                            \(try batch.map { try joined($0.dnsNames) })::text[], \(try batch.map { try joined($0.ipAddresses) })::text[],
                            \(batch.map(\.notBefore.timeIntervalSince1970))::float8[], \(batch.map(\.notAfter.timeIntervalSince1970))::float8[],
                            \(batch.map(\.issuedAt.timeIntervalSince1970))::float8[], \(batch.map { ByteBuffer(bytes: $0.der) })::bytea[],
                            \(renewedFrom)::text[], \(hasRenewedFrom)::bool[], \(supersededBy)::text[], \(hasSupersededBy)::bool[],
                            \(tokenID)::text[], \(hasTokenID)::bool[], \(issuerIDs)::bigint[], \(hasIssuerID)::bool[])
                     AS row(id, serial, spiffe_id, dns_names, ip_addresses, not_before, not_after, issued_at, der,
                            renewed_from, has_renewed_from, superseded_by, has_superseded_by, token_id, has_token_id,
                            issuer_id, has_issuer_id)
                """, logger: logger)
        }
        for batch in batches(snapshot.tokens) {
            try await connection.query("""
                INSERT INTO token (id, secret_hash, spiffe_id, dns_names, ip_addresses, created_at, expires_at, uses_allowed,
                                   uses_consumed, revoked)
                SELECT id, secret_hash, spiffe_id, string_to_array(dns_names, ','), string_to_array(ip_addresses, ','), created_at,
                       expires_at, uses_allowed, uses_consumed, revoked
                FROM unnest(\(batch.map(\.id))::text[], \(batch.map { ByteBuffer(bytes: $0.secretHash) })::bytea[],
                            \(batch.map(\.spiffeID))::text[], \(try batch.map { try joined($0.dnsNames) })::text[],
                            \(try batch.map { try joined($0.ipAddresses) })::text[], \(batch.map(\.createdAt.timeIntervalSince1970))::float8[],
                            \(batch.map(\.expiresAt.timeIntervalSince1970))::float8[], \(batch.map { Int64($0.usesAllowed) })::bigint[],
                            \(batch.map { Int64($0.usesConsumed) })::bigint[], \(batch.map(\.revoked))::bool[])
                     AS row(id, secret_hash, spiffe_id, dns_names, ip_addresses, created_at, expires_at, uses_allowed, uses_consumed, revoked)
                """, logger: logger)
        }
        for batch in batches(snapshot.revocations) {
            try await connection.query("""
                INSERT INTO revocation (sequence, serial, reason, revoked_at)
                SELECT * FROM unnest(\(batch.map(\.sequence))::bigint[], \(batch.map(\.serial))::text[],
                                     \(batch.map { Int64($0.reason) })::bigint[], \(batch.map(\.revokedAt.timeIntervalSince1970))::float8[])
                """, logger: logger)
        }
        for batch in batches(snapshot.auditEvents) {
            try await connection.query("""
                INSERT INTO audit_event (id, time, actor, action, subject, peer, detail, prev_hash, hash)
                SELECT * FROM unnest(\(batch.map(\.id))::bigint[], \(batch.map(\.entry.time.timeIntervalSince1970))::float8[],
                                     \(batch.map(\.entry.actor))::text[], \(batch.map(\.entry.action))::text[],
                                     \(batch.map(\.entry.subject))::text[], \(batch.map(\.entry.peer))::text[],
                                     \(batch.map(\.entry.detail))::text[], \(batch.map { ByteBuffer(bytes: $0.previousHash) })::bytea[],
                                     \(batch.map { ByteBuffer(bytes: $0.hash) })::bytea[])
                """, logger: logger)
        }
        for batch in batches(snapshot.auditCheckpoints) {
            try await connection.query("""
                INSERT INTO audit_checkpoint (id, row_id, hash, time, signer, signature)
                SELECT * FROM unnest(\(batch.map(\.id))::bigint[], \(batch.map(\.checkpoint.rowID))::bigint[],
                                     \(batch.map { ByteBuffer(bytes: $0.checkpoint.hash) })::bytea[],
                                     \(batch.map { Int64($0.checkpoint.time.timeIntervalSince1970) })::bigint[],
                                     \(batch.map(\.checkpoint.signer))::text[], \(batch.map { ByteBuffer(bytes: $0.checkpoint.signature) })::bytea[])
                """, logger: logger)
        }
        for batch in batches(snapshot.trustConfirmations) {
            try await connection.query("""
                INSERT INTO trust_confirmation (serial, spiffe_id, generation, bundle_sha256, confirmed_at, peer)
                SELECT * FROM unnest(\(batch.map(\.serial))::text[], \(batch.map(\.spiffeID))::text[], \(batch.map(\.generation))::bigint[],
                                     \(batch.map { ByteBuffer(bytes: $0.bundleSHA256) })::bytea[],
                                     \(batch.map(\.confirmedAt.timeIntervalSince1970))::float8[], \(batch.map(\.peer))::text[])
                """, logger: logger)
        }
        for batch in batches(snapshot.agentReports) {
            // Root serials travel joined by commas (hex holds none) and are split again.
            let reports = batch.map(\.report)
            try await connection.query("""
                INSERT INTO agent_report (lineage, caller_serial, spiffe_id, serving_serial, serving_not_after, trust_generation,
                                          bundle_sha256, root_serials, last_rotation, last_error, last_error_at, rotations, failures,
                                          agent_version, host_name, first_seen, reported_at, peer)
                SELECT lineage, caller_serial, spiffe_id, serving_serial, serving_not_after, trust_generation, bundle_sha256,
                       string_to_array(root_serials, ','), last_rotation, last_error, last_error_at, rotations, failures,
                       agent_version, host_name, first_seen, reported_at, peer
                FROM unnest(\(batch.map(\.lineage))::text[], \(batch.map(\.callerSerial))::text[], \(batch.map(\.spiffeID))::text[],
                            \(reports.map(\.servingSerial))::text[], \(reports.map(\.servingNotAfter))::bigint[],
                            \(reports.map(\.trustGeneration))::bigint[], \(reports.map { ByteBuffer(bytes: $0.bundleSHA256) })::bytea[],
                            \(try reports.map { try joined($0.rootSerials) })::text[], \(reports.map(\.lastRotation))::bigint[],
                            \(reports.map(\.lastError))::text[], \(reports.map(\.lastErrorAt))::bigint[], \(reports.map(\.rotations))::bigint[],
                            \(reports.map(\.failures))::bigint[], \(reports.map(\.agentVersion))::text[], \(reports.map(\.hostName))::text[],
                            \(batch.map(\.firstSeen.timeIntervalSince1970))::float8[], \(batch.map(\.reportedAt.timeIntervalSince1970))::float8[],
                            \(batch.map(\.peer))::text[])
                     AS row(lineage, caller_serial, spiffe_id, serving_serial, serving_not_after, trust_generation, bundle_sha256,
                            root_serials, last_rotation, last_error, last_error_at, rotations, failures, agent_version, host_name,
                            first_seen, reported_at, peer)
                """, logger: logger)
        }
        // A source without a head record is copied without one: the chain check below then fails.
        if let head = snapshot.auditHead {
            try await connection.query("UPDATE audit_head SET last_id = \(head.id), last_hash = \(Data(head.hash)) WHERE id = 1", logger: logger)
        } else {
            try await connection.query("DELETE FROM audit_head", logger: logger)
        }
        // Never lower: a CRL number once published must not be handed out again.
        try await connection.query("UPDATE crl_state SET last_number = GREATEST(last_number, \(snapshot.crlNumber)) WHERE id = 1",
                                   logger: logger)
        // ALTER … RESTART, not setval: it is undone with the transaction.
        for (table, column) in [("certificate", "id"), ("revocation", "sequence"), ("audit_event", "id"), ("audit_checkpoint", "id"),
                                ("issuer", "id")] {
            guard let last = snapshot.idCounters[table], last > 0 else { continue }
            try await connection.query(PostgresQuery(unsafeSQL: "ALTER TABLE \(table) ALTER COLUMN \(column) RESTART WITH \(last + 1)"),
                                       logger: logger)
        }
    }

    /// Reads the copy back inside its transaction: the counts, the audit head, the chain (each
    /// row's hash recomputed by the server, and its link to the row before), and the checkpoints.
    private static func checkCopy(of snapshot: AuthorityStoreSnapshot, on connection: PostgresConnection, logger: Logger) async throws {
        let context = "PostgreSQL copy"
        let counts = try await counts(on: connection, logger: logger)
        guard counts == snapshot.counts else {
            throw PostgresStoreError(context, "the copy has \(counts) rows where the source has \(snapshot.counts)")
        }
        let copiedHead = try await head(on: connection, logger: logger)
        guard copiedHead.map({ AuthorityStoreSnapshot.AuditHead(id: $0.id, hash: $0.hash) }) == snapshot.auditHead else {
            throw PostgresStoreError(context, "its audit head differs from the source's")
        }
        // AuditChain.hash in SQL (float8send is the time's IEEE bits big-endian, int4send a field's
        // UTF-8 length big-endian), so 100,000 rows are checked without sending them back.
        let genesis = Data(AuditChain.genesis)
        let broken = try await connection.query("""
            SELECT id FROM (
                SELECT id, prev_hash, hash, lag(hash, 1, \(genesis)::bytea) OVER (ORDER BY id) AS previous,
                       sha256(prev_hash || float8send(time)
                              || int4send(octet_length(convert_to(actor, 'UTF8'))) || convert_to(actor, 'UTF8')
                              || int4send(octet_length(convert_to(action, 'UTF8'))) || convert_to(action, 'UTF8')
                              || int4send(octet_length(convert_to(subject, 'UTF8'))) || convert_to(subject, 'UTF8')
                              || int4send(octet_length(convert_to(peer, 'UTF8'))) || convert_to(peer, 'UTF8')
                              || int4send(octet_length(convert_to(detail, 'UTF8'))) || convert_to(detail, 'UTF8')) AS computed
                FROM audit_event
            ) chain
            WHERE prev_hash <> previous OR hash <> computed
            ORDER BY id LIMIT 1
            """, logger: logger).collect().first?.decode(Int64.self)
        if let broken {
            throw PostgresStoreError(context, "its audit row \(broken) does not fit the chain")
        }
        let last = try await connection.query("SELECT id, hash FROM audit_event ORDER BY id DESC LIMIT 1", logger: logger)
            .collect().first.map { row in
                let (id, hash) = try row.decode((Int64, Data).self)
                return AuthorityStoreSnapshot.AuditHead(id: id, hash: Array(hash))
            } ?? AuthorityStoreSnapshot.AuditHead(id: 0, hash: AuditChain.genesis)
        guard last == snapshot.auditHead else {
            throw PostgresStoreError(context, "its last audit row is not the one its head records")
        }
        let checkpoints = try await connection.query("SELECT * FROM audit_checkpoint ORDER BY id", logger: logger).collect()
            .map(auditCheckpoint)
        guard checkpoints == snapshot.auditCheckpoints.map(\.checkpoint) else {
            throw PostgresStoreError(context, "its audit checkpoints differ from the source's")
        }
        let issuers = try await issuerSnapshot(on: connection, logger: logger)
        guard issuers == IssuerSnapshot(generation: snapshot.issuerGeneration, issuers: snapshot.issuers) else {
            throw PostgresStoreError(context, "its issuers differ from the source's")
        }
    }
}

/// Slices of at most 2,000 rows: one statement each, a few megabytes.
private func batches<Row>(_ rows: [Row]) -> [ArraySlice<Row>] {
    stride(from: 0, to: rows.count, by: 2000).map { rows[$0..<min($0 + 2000, rows.count)] }
}

/// A name list as one text, split again by string_to_array: names hold no comma (the SQLite
/// store keeps them joined by commas too).
private func joined(_ names: [String]) throws -> String {
    if let name = names.first(where: { $0.contains(",") }) {
        throw PostgresStoreError("PostgreSQL copy", "cannot copy the name \(AuthorityError.quoted(name, limit: 80)), which holds a comma")
    }
    return names.joined(separator: ",")
}

/// A column that may be NULL, as two arrays (PostgresNIO's arrays have no NULL elements): the
/// values, "" for NULL, and whether each is there.
private func nullable(_ values: [String?]) -> ([String], [Bool]) {
    (values.map { $0 ?? "" }, values.map { $0 != nil })
}
