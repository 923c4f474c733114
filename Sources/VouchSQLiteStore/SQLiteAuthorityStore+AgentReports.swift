import Foundation
import GRDB
import VouchAuthority

/// Agents' latest reports (the fleet view), one row per lineage.
extension SQLiteAuthorityStore {
    public func recordAgentReport(_ report: AgentReportRecord, callerSerial: String, spiffeID: String, peer: String,
                                  at time: Date) async throws {
        try await writer.write { db in
            let values = Self.reportValues(report, callerSerial: callerSerial, spiffeID: spiffeID, peer: peer, at: time)
            // The usual case, without walking the chain: the lineage's row was last written by this
            // certificate (a heartbeat) or by the one it was renewed from (the first report after a rotation).
            try db.executeCached(sql: """
                UPDATE agent_report SET \(Self.reportAssignments)
                WHERE caller_serial IN (?, (SELECT renewed_from FROM certificate WHERE serial = ?))
                """, arguments: StatementArguments(values + [callerSerial, callerSerial]))
            if db.changesCount > 0 { return }
            // A new agent, or reports missed across rotations: the lineage is the root of the chain.
            try db.executeCached(sql: """
                WITH RECURSIVE up(serial, renewed_from, depth) AS (
                    SELECT serial, renewed_from, 0 FROM certificate WHERE serial = ?
                    UNION ALL
                    SELECT c.serial, c.renewed_from, up.depth + 1 FROM certificate c JOIN up ON c.serial = up.renewed_from
                    WHERE up.depth < \(Self.maximumLineageDepth)
                )
                INSERT INTO agent_report (lineage, \(Self.reportColumns), first_seen)
                SELECT serial, \(Self.reportPlaceholders), ? FROM up WHERE true ORDER BY depth DESC LIMIT 1
                ON CONFLICT (lineage) DO UPDATE SET \(Self.reportTakingExcluded)
                """, arguments: StatementArguments([callerSerial] + values + [time.timeIntervalSince1970]))
            guard db.changesCount > 0 else { throw AuthorityError(.notFound, "no certificate \(callerSerial)") }
        }
    }

    public func agentReports() async throws -> [AgentReportRow] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT a.*, c.not_after AS served_not_after, c.superseded_by AS served_superseded_by,
                       s.issued_at AS successor_issued_at, r.revoked_at AS served_revoked_at
                FROM agent_report a
                LEFT JOIN certificate c ON c.serial = a.serving_serial
                LEFT JOIN certificate s ON s.serial = c.superseded_by
                LEFT JOIN revocation r ON r.serial = a.serving_serial
                ORDER BY a.lineage
                """).map(Self.agentReport)
        }
    }

    /// A walk up `renewed_from` stops after this many steps: only a tampered table loops.
    static let maximumLineageDepth = 100_000

    /// Every column a report sets, first_seen and lineage aside.
    static let reportColumns = """
        caller_serial, spiffe_id, serving_serial, serving_not_after, trust_generation, bundle_sha256, root_serials, \
        last_rotation, last_error, last_error_at, rotations, failures, agent_version, host_name, reported_at, peer
        """
    static let reportPlaceholders = Array(repeating: "?", count: 16).joined(separator: ", ")
    static let reportColumnNames = reportColumns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    static let reportAssignments = reportColumnNames.map { "\($0) = ?" }.joined(separator: ", ")
    /// An upsert keeps first_seen and takes every other column from the new report.
    static let reportTakingExcluded = reportColumnNames.map { "\($0) = excluded.\($0)" }.joined(separator: ", ")

    /// The values of `reportColumns`, in order.
    static func reportValues(_ r: AgentReportRecord, callerSerial: String, spiffeID: String, peer: String,
                             at time: Date) -> [(any DatabaseValueConvertible)?] {
        [callerSerial, spiffeID, r.servingSerial, r.servingNotAfter, r.trustGeneration, Data(r.bundleSHA256), list(r.rootSerials),
         r.lastRotation, r.lastError, r.lastErrorAt, r.rotations, r.failures, r.agentVersion, r.hostName,
         time.timeIntervalSince1970, peer]
    }

    static func agentReport(_ row: Row) -> AgentReportRow {
        let report = AgentReportRecord(
            servingSerial: row["serving_serial"], servingNotAfter: row["serving_not_after"], trustGeneration: row["trust_generation"],
            bundleSHA256: Array(row["bundle_sha256"] as Data), rootSerials: unlist(row["root_serials"]), lastRotation: row["last_rotation"],
            lastError: row["last_error"], lastErrorAt: row["last_error_at"], rotations: row["rotations"], failures: row["failures"],
            agentVersion: row["agent_version"], hostName: row["host_name"])
        let notAfter: Double? = row["served_not_after"]
        let revokedAt: Double? = row["served_revoked_at"]
        let successorIssuedAt: Double? = row["successor_issued_at"]
        let served = notAfter.map {
            ServedCertificate(notAfter: Date(timeIntervalSince1970: $0), revokedAt: revokedAt.map(Date.init(timeIntervalSince1970:)),
                              supersededBy: row["served_superseded_by"], successorIssuedAt: successorIssuedAt.map(Date.init(timeIntervalSince1970:)))
        }
        return AgentReportRow(lineage: row["lineage"], callerSerial: row["caller_serial"], spiffeID: row["spiffe_id"], report: report,
                              firstSeen: Date(timeIntervalSince1970: row["first_seen"]),
                              reportedAt: Date(timeIntervalSince1970: row["reported_at"]), peer: row["peer"], served: served)
    }
}
