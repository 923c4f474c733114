import Foundation
import Logging
import PostgresNIO
import VouchAuthority

/// Agents' latest reports (the fleet view), one row per lineage.
extension PostgresAuthorityStore {
    public func recordAgentReport(_ report: AgentReportRecord, callerSerial: String, spiffeID: String, peer: String,
                                  at time: Date) async throws {
        let r = report, reportedAt = time.timeIntervalSince1970, bundle = Data(report.bundleSHA256)
        // No writer lock and no transaction: each statement is atomic on its own, and an agent's
        // report does not wait behind issuance.
        try await withConnection { connection in
            // The usual case, without walking the chain: the lineage's row was last written by this
            // certificate (a heartbeat) or by the one it was renewed from (the first report after a rotation).
            let updated = try await connection.query("""
                UPDATE agent_report SET caller_serial = \(callerSerial), spiffe_id = \(spiffeID), serving_serial = \(r.servingSerial),
                    serving_not_after = \(r.servingNotAfter), trust_generation = \(r.trustGeneration), bundle_sha256 = \(bundle),
                    root_serials = \(r.rootSerials)::text[], last_rotation = \(r.lastRotation), last_error = \(r.lastError),
                    last_error_at = \(r.lastErrorAt), rotations = \(r.rotations), failures = \(r.failures),
                    agent_version = \(r.agentVersion), host_name = \(r.hostName), reported_at = \(reportedAt), peer = \(peer)
                WHERE caller_serial IN (\(callerSerial), (SELECT renewed_from FROM certificate WHERE serial = \(callerSerial)))
                RETURNING lineage
                """, logger: logger).collect()
            guard updated.isEmpty else { return }
            // A new agent, or reports missed across rotations: the lineage is the root of the chain.
            let inserted = try await connection.query("""
                WITH RECURSIVE up(serial, renewed_from, depth) AS (
                    SELECT serial, renewed_from, 0 FROM certificate WHERE serial = \(callerSerial)
                    UNION ALL
                    SELECT c.serial, c.renewed_from, up.depth + 1 FROM certificate c JOIN up ON c.serial = up.renewed_from
                    WHERE up.depth < \(unescaped: String(Self.maximumLineageDepth))
                )
                INSERT INTO agent_report (lineage, caller_serial, spiffe_id, serving_serial, serving_not_after, trust_generation,
                                          bundle_sha256, root_serials, last_rotation, last_error, last_error_at, rotations, failures,
                                          agent_version, host_name, first_seen, reported_at, peer)
                SELECT serial, \(callerSerial), \(spiffeID), \(r.servingSerial), \(r.servingNotAfter), \(r.trustGeneration), \(bundle),
                       \(r.rootSerials)::text[], \(r.lastRotation), \(r.lastError), \(r.lastErrorAt), \(r.rotations), \(r.failures),
                       \(r.agentVersion), \(r.hostName), \(reportedAt), \(reportedAt), \(peer)
                FROM up ORDER BY depth DESC LIMIT 1
                ON CONFLICT (lineage) DO UPDATE SET caller_serial = excluded.caller_serial, spiffe_id = excluded.spiffe_id,
                    serving_serial = excluded.serving_serial, serving_not_after = excluded.serving_not_after,
                    trust_generation = excluded.trust_generation, bundle_sha256 = excluded.bundle_sha256,
                    root_serials = excluded.root_serials, last_rotation = excluded.last_rotation, last_error = excluded.last_error,
                    last_error_at = excluded.last_error_at, rotations = excluded.rotations, failures = excluded.failures,
                    agent_version = excluded.agent_version, host_name = excluded.host_name, reported_at = excluded.reported_at,
                    peer = excluded.peer
                RETURNING lineage
                """, logger: logger).collect()
            if inserted.isEmpty { throw AuthorityError(.notFound, "no certificate \(callerSerial)") }
        }
    }

    public func agentReports() async throws -> [AgentReportRow] {
        try await rows("""
            SELECT a.*, c.not_after AS served_not_after, c.superseded_by AS served_superseded_by,
                   s.issued_at AS successor_issued_at, r.revoked_at AS served_revoked_at
            FROM agent_report a
            LEFT JOIN certificate c ON c.serial = a.serving_serial
            LEFT JOIN certificate s ON s.serial = c.superseded_by
            LEFT JOIN revocation r ON r.serial = a.serving_serial
            ORDER BY a.lineage
            """).map { try Self.agentReport($0, joined: true) }
    }

    /// A walk up `renewed_from` stops after this many steps: only a tampered table loops.
    static let maximumLineageDepth = 100_000

    /// A row of agent_report; with `joined`, also the served certificate's columns `agentReports` reads.
    static func agentReport(_ row: PostgresRow, joined: Bool) throws -> AgentReportRow {
        let columns = row.makeRandomAccess()
        let report = AgentReportRecord(
            servingSerial: try columns["serving_serial"].decode(String.self),
            servingNotAfter: try columns["serving_not_after"].decode(Int64.self),
            trustGeneration: try columns["trust_generation"].decode(Int64.self),
            bundleSHA256: Array(try columns["bundle_sha256"].decode(Data.self)),
            rootSerials: try columns["root_serials"].decode([String].self),
            lastRotation: try columns["last_rotation"].decode(Int64.self), lastError: try columns["last_error"].decode(String.self),
            lastErrorAt: try columns["last_error_at"].decode(Int64.self), rotations: try columns["rotations"].decode(Int64.self),
            failures: try columns["failures"].decode(Int64.self), agentVersion: try columns["agent_version"].decode(String.self),
            hostName: try columns["host_name"].decode(String.self))
        var served: ServedCertificate?
        if joined, let notAfter = try columns["served_not_after"].decode(Double?.self) {
            served = ServedCertificate(
                notAfter: Date(timeIntervalSince1970: notAfter),
                revokedAt: try columns["served_revoked_at"].decode(Double?.self).map(Date.init(timeIntervalSince1970:)),
                supersededBy: try columns["served_superseded_by"].decode(String?.self),
                successorIssuedAt: try columns["successor_issued_at"].decode(Double?.self).map(Date.init(timeIntervalSince1970:)))
        }
        return AgentReportRow(lineage: try columns["lineage"].decode(String.self), callerSerial: try columns["caller_serial"].decode(String.self),
                              spiffeID: try columns["spiffe_id"].decode(String.self), report: report,
                              firstSeen: Date(timeIntervalSince1970: try columns["first_seen"].decode(Double.self)),
                              reportedAt: Date(timeIntervalSince1970: try columns["reported_at"].decode(Double.self)),
                              peer: try columns["peer"].decode(String.self), served: served)
    }
}
