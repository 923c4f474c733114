import Foundation
import GRDB
import VouchAuthority

/// The issuers (Issuers.swift): every change goes through the group-commit writer, in a savepoint
/// of its own, so a refused change rolls back alone.
extension SQLiteAuthorityStore {
    public func adoptInitialIssuers(root: IssuerRecord, intermediate: IssuerRecord) async throws -> IssuerSnapshot {
        try await writer.write { db in
            if try Int.fetchOne(db, sql: "SELECT count(*) FROM issuer") == 0 {
                let crlNumber = try Int64.fetchOne(db, sql: "SELECT last_number FROM crl_state WHERE id = 1") ?? 0
                var root = root, intermediate = intermediate
                (root.state, root.parentID, root.subjectID, root.crlNumber, root.createdGeneration) = (.active, nil, nil, 0, 1)
                let rootID = try Self.insertIssuer(root, in: db)
                (intermediate.state, intermediate.parentID, intermediate.subjectID) = (.active, rootID, nil)
                (intermediate.crlNumber, intermediate.createdGeneration) = (crlNumber, 1)
                let intermediateID = try Self.insertIssuer(intermediate, in: db)
                try db.execute(sql: "UPDATE certificate SET issuer_id = ? WHERE issuer_id IS NULL", arguments: [intermediateID])
                try db.execute(sql: "UPDATE issuer_state SET generation = 1 WHERE id = 1")
            }
            return try Self.issuerSnapshot(in: db)
        }
    }

    public func issuers() async throws -> IssuerSnapshot {
        try await pool.read { db in try Self.issuerSnapshot(in: db) }
    }

    public func issuerGeneration() async throws -> Int64 {
        try await pool.read { db in try Self.generation(in: db) }
    }

    public func changeIssuers(_ change: IssuerChange, expectedGeneration: Int64, audit: [AuditEntry]) async throws -> Int64 {
        try change.validate()
        return try await writer.write { db in
            let generation = try Self.generation(in: db)
            guard generation == expectedGeneration else {
                throw AuthorityError(.failedPrecondition, IssuerChange.staleGenerationMessage)
            }
            let now = (audit.first?.time ?? Date()).timeIntervalSince1970
            let highest = try Int64.fetchOne(db, sql: """
                SELECT max(coalesce((SELECT max(crl_number) FROM issuer), 0), (SELECT last_number FROM crl_state WHERE id = 1))
                """) ?? 0
            for update in change.orderedUpdates {
                guard let current = try Row.fetchOne(db, sql: "SELECT * FROM issuer WHERE id = ?", arguments: [update.id]).map(Self.issuer) else {
                    throw AuthorityError(.notFound, "no issuer \(update.id)")
                }
                try Self.checkSingleActive(current, becoming: update.state, in: db)
                // An intermediate taking over continues from the highest CRL number: /crl's never drops.
                let crlNumber = update.state == .active && current.state != .active && current.kind == .intermediate
                    ? max(current.crlNumber, highest) : current.crlNumber
                try db.execute(sql: "UPDATE issuer SET state = ?, crl_number = ?, changed_at = ? WHERE id = ?",
                               arguments: [update.state.rawValue, crlNumber, now, update.id])
            }
            var inserted: [Int64] = []
            for insert in change.inserts {
                var record = insert.record
                if try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM issuer WHERE serial = ?)", arguments: [record.serial]) == true {
                    throw AuthorityError(.failedPrecondition, "issuer \(record.serial) exists")
                }
                try Self.checkSingleActive(record, becoming: record.state, in: db)
                record.parentID = try Self.resolve(insert.parent, inserted: inserted, in: db)
                record.subjectID = try Self.resolve(insert.subject, inserted: inserted, in: db)
                record.createdGeneration = generation + 1
                record.crlNumber = record.kind == .intermediate && record.state == .active ? highest : 0
                inserted.append(try Self.insertIssuer(record, in: db))
            }
            for revocation in change.revocations {
                try db.execute(sql: "UPDATE issuer SET revoked_at = ?, revocation_reason = ? WHERE id = ? AND kind IN ('intermediate', 'cross')",
                               arguments: [revocation.at.timeIntervalSince1970, revocation.reason, revocation.id])
                guard db.changesCount == 1 else { throw AuthorityError(.notFound, "no intermediate or cross certificate \(revocation.id)") }
            }
            for crl in change.rootCRLs {
                guard let id = try Self.resolve(crl.root, inserted: inserted, in: db),
                      let row = try Row.fetchOne(db, sql: "SELECT serial, crl_number FROM issuer WHERE id = ? AND kind = 'root'", arguments: [id]) else {
                    throw AuthorityError(.notFound, "no root for this CRL")
                }
                let stored: Int64 = row["crl_number"]
                guard crl.number > stored else { throw IssuerChange.staleRootCRLNumber(row["serial"], number: crl.number, stored: stored) }
                try db.execute(sql: "UPDATE issuer SET crl_der = ?, crl_number = ?, crl_next_update = ? WHERE id = ?",
                               arguments: [Data(crl.der), crl.number, crl.nextUpdate.timeIntervalSince1970, id])
            }
            try db.execute(sql: "UPDATE issuer_state SET generation = ? WHERE id = 1", arguments: [generation + 1])
            for entry in audit { try Self.append(entry, in: db) }
            return generation + 1
        }
    }

    public func nextCRLNumberAndRevocations(issuerID: Int64) async throws -> (number: Int64, revocations: [RevocationRecord]) {
        try await writer.write { db in try Self.nextCRLNumber(issuerID: issuerID, in: db) }
    }

    public func recordTrustConfirmation(serial: String, spiffeID: String, generation: Int64, bundleSHA256: [UInt8],
                                        peer: String, at time: Date) async throws {
        try await writer.write { db in
            guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM certificate WHERE serial = ?)"),
                                    arguments: [serial]) == true else {
                throw AuthorityError(.notFound, "no certificate \(serial)")
            }
            try db.executeCached(sql: """
                INSERT INTO trust_confirmation (serial, spiffe_id, generation, bundle_sha256, confirmed_at, peer)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (serial) DO UPDATE SET spiffe_id = excluded.spiffe_id, generation = excluded.generation,
                    bundle_sha256 = excluded.bundle_sha256, confirmed_at = excluded.confirmed_at, peer = excluded.peer
                WHERE excluded.generation >= trust_confirmation.generation
                """, arguments: [serial, spiffeID, generation, Data(bundleSHA256), time.timeIntervalSince1970, peer])
        }
    }

    public func trustConfirmations() async throws -> [TrustConfirmation] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM trust_confirmation ORDER BY serial").map(Self.trustConfirmation)
        }
    }

    public func rolloverCounts(rootID: Int64, generation: Int64, now: Date, adminIDs: Set<String>) async throws -> RolloverCounts {
        try await pool.read { db in
            let issuers = try Self.issuerSnapshot(in: db).issuers
            let live = try Row.fetchAll(db, sql: """
                SELECT c.serial, c.spiffe_id, c.not_after, c.issuer_id, t.generation
                FROM certificate c LEFT JOIN trust_confirmation t ON t.serial = c.serial
                WHERE c.not_after > ? AND c.superseded_by IS NULL
                  AND NOT EXISTS (SELECT 1 FROM revocation r WHERE r.serial = c.serial)
                """, arguments: [now.timeIntervalSince1970]).map { row in
                RolloverCounts.Live(serial: row["serial"], spiffeID: row["spiffe_id"], notAfter: Date(timeIntervalSince1970: row["not_after"]),
                                    issuerID: row["issuer_id"], confirmedGeneration: row["generation"])
            }
            return RolloverCounts.tally(live, rootID: rootID, issuers: issuers, generation: generation, adminIDs: adminIDs)
        }
    }

    // MARK: Inside a transaction

    /// Takes `issuerID`'s next CRL number and reads its revocations (no recorded issuer = the
    /// initial intermediate). The UPDATE holds the write lock to the commit, so whoever takes the
    /// following number reads after this read.
    static func nextCRLNumber(issuerID: Int64, in db: Database) throws -> (number: Int64, revocations: [RevocationRecord]) {
        let initial = try Int64.fetchOne(db.cachedStatement(sql: "SELECT min(id) FROM issuer WHERE kind = 'intermediate'"))
        if issuerID == initial {
            // The initial intermediate's number is also the database-wide one a replica not upgraded yet takes.
            try db.executeCached(sql: """
                UPDATE issuer SET crl_number = max(crl_number, (SELECT last_number FROM crl_state WHERE id = 1)) + 1 WHERE id = ?
                """, arguments: [issuerID])
            try db.executeCached(sql: "UPDATE crl_state SET last_number = (SELECT crl_number FROM issuer WHERE id = ?) WHERE id = 1",
                                 arguments: [issuerID])
        } else {
            try db.executeCached(sql: "UPDATE issuer SET crl_number = crl_number + 1 WHERE id = ?", arguments: [issuerID])
        }
        guard db.changesCount == 1,
              let number = try Int64.fetchOne(db.cachedStatement(sql: "SELECT crl_number FROM issuer WHERE id = ?"), arguments: [issuerID]) else {
            throw AuthorityError(.notFound, "no issuer \(issuerID)")
        }
        let revocations = try Row.fetchAll(db.cachedStatement(sql: revocationSQL + " WHERE coalesce(c.issuer_id, ?) = ? ORDER BY r.sequence"),
                                           arguments: [initial, issuerID]).map(revocation)
        return (number, revocations)
    }

    static func generation(in db: Database) throws -> Int64 {
        try Int64.fetchOne(db.cachedStatement(sql: "SELECT generation FROM issuer_state WHERE id = 1")) ?? 0
    }

    static func issuerSnapshot(in db: Database) throws -> IssuerSnapshot {
        IssuerSnapshot(generation: try generation(in: db),
                       issuers: try Row.fetchAll(db, sql: "SELECT * FROM issuer ORDER BY id").map(issuer))
    }

    static func checkSingleActive(_ issuer: IssuerRecord, becoming state: IssuerState, in db: Database) throws {
        guard state == .active, IssuerChange.hasSingleActive(issuer.kind),
              let other = try String.fetchOne(db, sql: "SELECT serial FROM issuer WHERE kind = ? AND state = 'active' AND serial <> ?",
                                              arguments: [issuer.kind.rawValue, issuer.serial]) else { return }
        throw IssuerChange.secondActive(issuer.kind, serial: issuer.serial, active: other)
    }

    static func resolve(_ reference: IssuerChange.Reference?, inserted: [Int64], in db: Database) throws -> Int64? {
        switch reference {
        case .id(let id)?:
            guard try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM issuer WHERE id = ?)", arguments: [id]) == true else {
                throw AuthorityError(.notFound, "no issuer \(id)")
            }
            return id
        case .inserted(let index)?:
            return inserted[index]
        case nil:
            return nil
        }
    }

    /// Inserts `record` with every column but the id (`migrate` copies ids with `insertIssuer(_:keepingID:)`).
    static func insertIssuer(_ record: IssuerRecord, keepingID: Bool = false, in db: Database) throws -> Int64 {
        try db.execute(sql: """
            INSERT INTO issuer (id, kind, state, parent_id, subject_id, serial, der, not_before, not_after, key_ref, key_pem,
                                crl_number, created_generation, created_at, changed_at,
                                crl_der, crl_next_update, revoked_at, revocation_reason)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [keepingID ? record.id : nil, record.kind.rawValue, record.state.rawValue, record.parentID, record.subjectID,
                             record.serial, Data(record.der), record.notBefore.timeIntervalSince1970, record.notAfter.timeIntervalSince1970,
                             record.keyRef, record.keyPEM, record.crlNumber, record.createdGeneration,
                             record.createdAt.timeIntervalSince1970, record.changedAt.timeIntervalSince1970,
                             record.crlDER.map { Data($0) }, record.crlNextUpdate?.timeIntervalSince1970,
                             record.revokedAt?.timeIntervalSince1970, record.revocationReason])
        return db.lastInsertedRowID
    }

    static func issuer(_ row: Row) throws -> IssuerRecord {
        let kind: String = row["kind"], state: String = row["state"]
        guard let kind = IssuerKind(rawValue: kind), let state = IssuerState(rawValue: state) else {
            throw AuthorityError(.internal, "issuer \(row["id"] as Int64) has an unknown kind or state: \(kind) \(state)")
        }
        return IssuerRecord(id: row["id"], kind: kind, state: state, parentID: row["parent_id"], subjectID: row["subject_id"],
                            serial: row["serial"], der: Array(row["der"] as Data),
                            notBefore: Date(timeIntervalSince1970: row["not_before"]), notAfter: Date(timeIntervalSince1970: row["not_after"]),
                            keyRef: row["key_ref"], keyPEM: row["key_pem"], crlNumber: row["crl_number"],
                            createdGeneration: row["created_generation"], createdAt: Date(timeIntervalSince1970: row["created_at"]),
                            changedAt: Date(timeIntervalSince1970: row["changed_at"]),
                            crlDER: (row["crl_der"] as Data?).map { Array($0) },
                            crlNextUpdate: (row["crl_next_update"] as Double?).map(Date.init(timeIntervalSince1970:)),
                            revokedAt: (row["revoked_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                            revocationReason: row["revocation_reason"])
    }

    static func trustConfirmation(_ row: Row) -> TrustConfirmation {
        TrustConfirmation(serial: row["serial"], spiffeID: row["spiffe_id"], generation: row["generation"],
                          bundleSHA256: Array(row["bundle_sha256"] as Data), confirmedAt: Date(timeIntervalSince1970: row["confirmed_at"]),
                          peer: row["peer"])
    }
}
