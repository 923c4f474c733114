import Foundation
import Logging
import PostgresNIO
import VouchAuthority

/// The issuers (Issuers.swift). Changes take the writer lock and notify `vouch_issuers` with the new
/// generation at commit, so every replica's follower reloads at once.
///
/// Row locks, always taken in this order so no two transactions wait on each other: issuer rows
/// (by id), then `crl_state`. A CRL number locks its issuer's row to the commit (whoever takes the
/// next one of that issuer reads after this read); the initial intermediate's also moves
/// `crl_state`, which replicas not upgraded yet still number from.
extension PostgresAuthorityStore {
    static let issuerChannel = "vouch_issuers"

    public func adoptInitialIssuers(root: IssuerRecord, intermediate: IssuerRecord) async throws -> IssuerSnapshot {
        try await write { connection in
            let stored = try await connection.query("SELECT count(*) FROM issuer", logger: logger).collect().first?.decode(Int.self) ?? 0
            if stored == 0 {
                let crlNumber = try await connection.query("SELECT last_number FROM crl_state WHERE id = 1 FOR UPDATE", logger: logger)
                    .collect().first?.decode(Int64.self) ?? 0
                var root = root, intermediate = intermediate
                (root.state, root.parentID, root.subjectID, root.crlNumber, root.createdGeneration) = (.active, nil, nil, 0, 1)
                let rootID = try await Self.insertIssuer(root, on: connection, logger: logger)
                (intermediate.state, intermediate.parentID, intermediate.subjectID) = (.active, rootID, nil)
                (intermediate.crlNumber, intermediate.createdGeneration) = (crlNumber, 1)
                let intermediateID = try await Self.insertIssuer(intermediate, on: connection, logger: logger)
                try await connection.query("UPDATE certificate SET issuer_id = \(intermediateID) WHERE issuer_id IS NULL", logger: logger)
                try await connection.query("UPDATE issuer_state SET generation = 1 WHERE id = 1", logger: logger)
                try await Self.announceIssuers(on: connection, logger: logger)
            }
            return try await Self.issuerSnapshot(on: connection, logger: logger)
        }
    }

    public func issuers() async throws -> IssuerSnapshot {
        try await snapshot { connection in try await Self.issuerSnapshot(on: connection, logger: logger) }
    }

    public func issuerGeneration() async throws -> Int64 {
        try await rows("SELECT generation FROM issuer_state WHERE id = 1").first?.decode(Int64.self) ?? 0
    }

    public func changeIssuers(_ change: IssuerChange, expectedGeneration: Int64, audit: [AuditEntry]) async throws -> Int64 {
        try change.validate()
        return try await write { connection in
            let generation = try await connection.query("SELECT generation FROM issuer_state WHERE id = 1", logger: logger)
                .collect().first?.decode(Int64.self) ?? 0
            guard generation == expectedGeneration else {
                throw AuthorityError(.failedPrecondition, IssuerChange.staleGenerationMessage)
            }
            // Locked, so no CRL number is taken between reading the highest and handing it on.
            var issuers = try await connection.query("SELECT \(unescaped: Self.issuerColumns) FROM issuer ORDER BY id FOR UPDATE",
                                                     logger: logger).collect().map(Self.issuer)
            let legacy = try await connection.query("SELECT last_number FROM crl_state WHERE id = 1 FOR UPDATE", logger: logger)
                .collect().first?.decode(Int64.self) ?? 0
            let highest = max(legacy, issuers.map(\.crlNumber).max() ?? 0)
            let now = (audit.first?.time ?? Date()).timeIntervalSince1970
            for update in change.orderedUpdates {
                guard let index = issuers.firstIndex(where: { $0.id == update.id }) else {
                    throw AuthorityError(.notFound, "no issuer \(update.id)")
                }
                let current = issuers[index]
                try Self.checkSingleActive(current, becoming: update.state, among: issuers)
                // An intermediate taking over continues from the highest CRL number: /crl's never drops.
                let crlNumber = update.state == .active && current.state != .active && current.kind == .intermediate
                    ? max(current.crlNumber, highest) : current.crlNumber
                try await connection.query("""
                    UPDATE issuer SET state = \(update.state.rawValue), crl_number = \(crlNumber), changed_at = \(now) WHERE id = \(update.id)
                    """, logger: logger)
                issuers[index].state = update.state
            }
            var inserted: [Int64] = []
            for insert in change.inserts {
                var record = insert.record
                guard !issuers.contains(where: { $0.serial == record.serial }) else {
                    throw AuthorityError(.failedPrecondition, "issuer \(record.serial) exists")
                }
                try Self.checkSingleActive(record, becoming: record.state, among: issuers)
                record.parentID = try Self.resolve(insert.parent, inserted: inserted, among: issuers)
                record.subjectID = try Self.resolve(insert.subject, inserted: inserted, among: issuers)
                record.createdGeneration = generation + 1
                record.crlNumber = record.kind == .intermediate && record.state == .active ? highest : 0
                record.id = try await Self.insertIssuer(record, on: connection, logger: logger)
                inserted.append(record.id)
                issuers.append(record)
            }
            for revocation in change.revocations {
                guard issuers.contains(where: { $0.id == revocation.id && ($0.kind == .intermediate || $0.kind == .cross) }) else {
                    throw AuthorityError(.notFound, "no intermediate or cross certificate \(revocation.id)")
                }
                try await connection.query("""
                    UPDATE issuer SET revoked_at = \(revocation.at.timeIntervalSince1970), revocation_reason = \(Int32(revocation.reason))
                    WHERE id = \(revocation.id)
                    """, logger: logger)
            }
            for crl in change.rootCRLs {
                let id = try Self.resolve(crl.root, inserted: inserted, among: issuers)
                guard let root = issuers.first(where: { $0.id == id && $0.kind == .root }) else {
                    throw AuthorityError(.notFound, "no root for this CRL")
                }
                guard crl.number > root.crlNumber else {
                    throw IssuerChange.staleRootCRLNumber(root.serial, number: crl.number, stored: root.crlNumber)
                }
                try await connection.query("""
                    UPDATE issuer SET crl_der = \(Data(crl.der)), crl_number = \(crl.number),
                        crl_next_update = \(crl.nextUpdate.timeIntervalSince1970) WHERE id = \(root.id)
                    """, logger: logger)
            }
            try await connection.query("UPDATE issuer_state SET generation = \(generation + 1) WHERE id = 1", logger: logger)
            try await Self.append(audit, on: connection, logger: logger)
            try await Self.announceIssuers(on: connection, logger: logger)
            return generation + 1
        }
    }

    public func nextCRLNumberAndRevocations(issuerID: Int64) async throws -> (number: Int64, revocations: [RevocationRecord]) {
        try await withConnection { connection in
            try await Transaction.run(on: connection, .write, logger: logger) { connection in
                try await Self.nextCRLNumber(issuerID: issuerID, on: connection, logger: logger)
            }
        }
    }

    public func recordTrustConfirmation(serial: String, spiffeID: String, generation: Int64, bundleSHA256: [UInt8],
                                        peer: String, at time: Date) async throws {
        // One statement, no writer lock: an agent's report does not wait behind issuance.
        try await withConnection { connection in
            let written = try await connection.query("""
                INSERT INTO trust_confirmation (serial, spiffe_id, generation, bundle_sha256, confirmed_at, peer)
                SELECT \(serial), \(spiffeID), \(generation), \(Data(bundleSHA256)), \(time.timeIntervalSince1970), \(peer)
                WHERE EXISTS (SELECT 1 FROM certificate WHERE serial = \(serial))
                ON CONFLICT (serial) DO UPDATE SET spiffe_id = excluded.spiffe_id, generation = excluded.generation,
                    bundle_sha256 = excluded.bundle_sha256, confirmed_at = excluded.confirmed_at, peer = excluded.peer
                WHERE excluded.generation >= trust_confirmation.generation
                RETURNING serial
                """, logger: logger).collect()
            guard written.isEmpty else { return }
            // Nothing written: an older generation than the stored one (fine), or no such certificate.
            let known = try await connection.query("SELECT EXISTS (SELECT 1 FROM certificate WHERE serial = \(serial))", logger: logger)
                .collect().first?.decode(Bool.self) ?? false
            if !known { throw AuthorityError(.notFound, "no certificate \(serial)") }
        }
    }

    public func trustConfirmations() async throws -> [TrustConfirmation] {
        try await rows("SELECT \(unescaped: Self.confirmationColumns) FROM trust_confirmation ORDER BY serial").map(Self.trustConfirmation)
    }

    public func rolloverCounts(rootID: Int64, generation: Int64, now: Date, adminIDs: Set<String>) async throws -> RolloverCounts {
        try await snapshot { connection in
            let issuers = try await Self.issuerSnapshot(on: connection, logger: logger).issuers
            let live = try await connection.query("""
                SELECT c.serial, c.spiffe_id, c.not_after, c.issuer_id, t.generation
                FROM certificate c LEFT JOIN trust_confirmation t ON t.serial = c.serial
                WHERE c.not_after > \(now.timeIntervalSince1970) AND c.superseded_by IS NULL
                  AND NOT EXISTS (SELECT 1 FROM revocation r WHERE r.serial = c.serial)
                """, logger: logger).collect().map { row in
                let (serial, spiffeID, notAfter, issuerID, confirmed) = try row.decode((String, String, Double, Int64?, Int64?).self)
                return RolloverCounts.Live(serial: serial, spiffeID: spiffeID, notAfter: Date(timeIntervalSince1970: notAfter),
                                           issuerID: issuerID, confirmedGeneration: confirmed)
            }
            return RolloverCounts.tally(live, rootID: rootID, issuers: issuers, generation: generation, adminIDs: adminIDs)
        }
    }

    // MARK: Inside a transaction

    /// Inside a writing transaction that changed the issuers: tells every listening replica at commit.
    static func announceIssuers(on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("""
            SELECT pg_notify(\(issuerChannel), (SELECT generation FROM issuer_state WHERE id = 1)::text)
            """, logger: logger)
    }

    /// Takes `issuerID`'s next CRL number and reads its revocations (no recorded issuer = the initial
    /// intermediate), in the caller's transaction.
    static func nextCRLNumber(issuerID: Int64, on connection: PostgresConnection,
                              logger: Logger) async throws -> (number: Int64, revocations: [RevocationRecord]) {
        guard let row = try await connection.query("""
            SELECT crl_number, id = (SELECT min(id) FROM issuer WHERE kind = 'intermediate') FROM issuer WHERE id = \(issuerID) FOR UPDATE
            """, logger: logger).collect().first else {
            throw AuthorityError(.notFound, "no issuer \(issuerID)")
        }
        let (current, isInitial) = try row.decode((Int64, Bool).self)
        var number = current + 1
        if isInitial {
            // Also the database-wide number, which a replica not upgraded yet takes (it locks only crl_state).
            number = try await connection.query("""
                UPDATE crl_state SET last_number = GREATEST(last_number, \(current)) + 1 WHERE id = 1 RETURNING last_number
                """, logger: logger).collect().first?.decode(Int64.self) ?? number
        }
        try await connection.query("UPDATE issuer SET crl_number = \(number) WHERE id = \(issuerID)", logger: logger)
        let revocations = try await connection.query("""
            \(unescaped: revocationColumns)
            WHERE coalesce(c.issuer_id, (SELECT min(id) FROM issuer WHERE kind = 'intermediate')) = \(issuerID)
            ORDER BY r.sequence
            """, logger: logger).collect().map(revocation)
        return (number, revocations)
    }

    static func issuerSnapshot(on connection: PostgresConnection, logger: Logger) async throws -> IssuerSnapshot {
        let generation = try await connection.query("SELECT generation FROM issuer_state WHERE id = 1", logger: logger)
            .collect().first?.decode(Int64.self) ?? 0
        let issuers = try await connection.query("SELECT \(unescaped: issuerColumns) FROM issuer ORDER BY id", logger: logger)
            .collect().map(issuer)
        return IssuerSnapshot(generation: generation, issuers: issuers)
    }

    static func checkSingleActive(_ issuer: IssuerRecord, becoming state: IssuerState, among issuers: [IssuerRecord]) throws {
        guard state == .active, IssuerChange.hasSingleActive(issuer.kind),
              let other = issuers.first(where: { $0.kind == issuer.kind && $0.state == .active && $0.serial != issuer.serial }) else { return }
        throw IssuerChange.secondActive(issuer.kind, serial: issuer.serial, active: other.serial)
    }

    static func resolve(_ reference: IssuerChange.Reference?, inserted: [Int64], among issuers: [IssuerRecord]) throws -> Int64? {
        switch reference {
        case .id(let id)?:
            guard issuers.contains(where: { $0.id == id }) else { throw AuthorityError(.notFound, "no issuer \(id)") }
            return id
        case .inserted(let index)?:
            return inserted[index]
        case nil:
            return nil
        }
    }

    static let issuerColumns = """
        id, kind, state, parent_id, subject_id, serial, der, not_before, not_after, key_ref, key_pem, crl_number,
        created_generation, created_at, changed_at, crl_der, crl_next_update, revoked_at, revocation_reason
        """

    static let confirmationColumns = "serial, spiffe_id, generation, bundle_sha256, confirmed_at, peer"

    /// Inserts `record` (its id from the identity unless `keepingID`, as `importAll` copies) and returns its id.
    static func insertIssuer(_ record: IssuerRecord, keepingID: Bool = false, on connection: PostgresConnection,
                             logger: Logger) async throws -> Int64 {
        let id: Int64? = keepingID ? record.id : nil
        let row = try await connection.query("""
            INSERT INTO issuer (id, kind, state, parent_id, subject_id, serial, der, not_before, not_after, key_ref, key_pem,
                                crl_number, created_generation, created_at, changed_at,
                                crl_der, crl_next_update, revoked_at, revocation_reason)
            VALUES (coalesce(\(id)::bigint, nextval(pg_get_serial_sequence('issuer', 'id'))), \(record.kind.rawValue),
                    \(record.state.rawValue), \(record.parentID)::bigint, \(record.subjectID)::bigint, \(record.serial),
                    \(Data(record.der)), \(record.notBefore.timeIntervalSince1970), \(record.notAfter.timeIntervalSince1970),
                    \(record.keyRef), \(record.keyPEM)::text, \(record.crlNumber), \(record.createdGeneration),
                    \(record.createdAt.timeIntervalSince1970), \(record.changedAt.timeIntervalSince1970),
                    \(record.crlDER.map { Data($0) })::bytea, \(record.crlNextUpdate?.timeIntervalSince1970)::double precision,
                    \(record.revokedAt?.timeIntervalSince1970)::double precision, \(record.revocationReason.map { Int32($0) })::integer)
            RETURNING id
            """, logger: logger).collect().first
        return try row?.decode(Int64.self) ?? 0
    }

    static func issuer(_ row: PostgresRow) throws -> IssuerRecord {
        let columns = row.makeRandomAccess()
        let id = try columns["id"].decode(Int64.self)
        let kind = try columns["kind"].decode(String.self), state = try columns["state"].decode(String.self)
        guard let kind = IssuerKind(rawValue: kind), let state = IssuerState(rawValue: state) else {
            throw AuthorityError(.internal, "issuer \(id) has an unknown kind or state: \(kind) \(state)")
        }
        return IssuerRecord(
            id: id, kind: kind, state: state, parentID: try columns["parent_id"].decode(Int64?.self),
            subjectID: try columns["subject_id"].decode(Int64?.self), serial: try columns["serial"].decode(String.self),
            der: Array(try columns["der"].decode(Data.self)),
            notBefore: Date(timeIntervalSince1970: try columns["not_before"].decode(Double.self)),
            notAfter: Date(timeIntervalSince1970: try columns["not_after"].decode(Double.self)),
            keyRef: try columns["key_ref"].decode(String.self), keyPEM: try columns["key_pem"].decode(String?.self),
            crlNumber: try columns["crl_number"].decode(Int64.self), createdGeneration: try columns["created_generation"].decode(Int64.self),
            createdAt: Date(timeIntervalSince1970: try columns["created_at"].decode(Double.self)),
            changedAt: Date(timeIntervalSince1970: try columns["changed_at"].decode(Double.self)),
            crlDER: try columns["crl_der"].decode(Data?.self).map { Array($0) },
            crlNextUpdate: try columns["crl_next_update"].decode(Double?.self).map(Date.init(timeIntervalSince1970:)),
            revokedAt: try columns["revoked_at"].decode(Double?.self).map(Date.init(timeIntervalSince1970:)),
            revocationReason: try columns["revocation_reason"].decode(Int32?.self).map { Int($0) })
    }

    static func trustConfirmation(_ row: PostgresRow) throws -> TrustConfirmation {
        let (serial, spiffeID, generation, bundle, confirmedAt, peer) = try row.decode((String, String, Int64, Data, Double, String).self)
        return TrustConfirmation(serial: serial, spiffeID: spiffeID, generation: generation, bundleSHA256: Array(bundle),
                                 confirmedAt: Date(timeIntervalSince1970: confirmedAt), peer: peer)
    }
}
