import Foundation

/// The fleet view: agents report what they serve and trust (ReportAgent), admins list them with
/// the problems the CA judges (ListAgents, `vouch fleet list`, the `vouch_ca_agents` gauge).
extension CertificateAuthority {
    /// Stores `report` as the latest of the caller's lineage. The caller must be a workload: the
    /// CA's own and admin identities are refused (no fake agents in the listing). The served
    /// certificate must be the caller's or another stored one of its SPIFFE ID. An identical
    /// repeat within 10 s of the last one stored from the same certificate is acknowledged
    /// without a write; more than 10 changed reports in 10 s from one certificate are refused
    /// (`resourceExhausted`, see RecentAgentReports). No audit row (as trust confirmations: a
    /// heartbeat is no decision).
    public func recordAgentReport(caller: Caller, report: AgentReportRecord) async throws {
        guard let serial = caller.serial, let spiffeID = caller.spiffeID else {
            throw AuthorityError(.unauthenticated, "ReportAgent needs a client certificate")
        }
        guard !policy.isReserved(spiffeID), !RolloverCounts.isOwn(spiffeID, adminIDs: policy.adminIDs) else {
            throw AuthorityError(.permissionDenied, "\(spiffeID) is an identity of the CA or its admins, not an agent's; it does not report as an agent")
        }
        let record = try report.validated()
        let now = clock()
        if try recentAgentReports.isRepeat(record, serial: serial, now: now) { return }
        if record.trustGeneration > issuerSet.generation {
            // Another replica may have moved on: read the store's generation before refusing.
            try await reloadIssuers()
            guard record.trustGeneration <= issuerSet.generation else {
                throw AuthorityError(.invalidArgument, "trust_generation \(record.trustGeneration) is newer than the CA's (\(issuerSet.generation))")
            }
        }
        if record.servingSerial != serial {
            guard let served = try await store.certificate(serial: record.servingSerial), served.spiffeID == spiffeID else {
                throw AuthorityError(.invalidArgument, "serving_serial \(record.servingSerial) is not a certificate of \(spiffeID)")
            }
        }
        try await store.recordAgentReport(record, callerSerial: serial, spiffeID: spiffeID, peer: caller.peer, at: now)
        recentAgentReports.stored(record, serial: serial, now: now)
    }

    /// The judge for this instant: the CA's current roots, agents silent after `staleAfter`.
    public func fleetJudge(staleAfter: TimeInterval) async throws -> FleetJudge {
        FleetJudge(now: clock(), staleAfter: staleAfter, issuers: try await loadedIssuers())
    }

    /// One page of agents, problems first, then by SPIFFE ID. A first page judges every agent now;
    /// the following pages are cut from that same listing, kept for `FleetListings.lifetime`
    /// (another replica, or a listing evicted by a newer one, judges again at the listing's instant).
    public func listAgents(staleAfter: TimeInterval, problemsOnly: Bool, limit: Int,
                           after cursor: AgentListCursor?) async throws -> (agents: [JudgedAgent], next: AgentListCursor?) {
        let listing: FleetListing
        if let cursor {
            let age = clock().timeIntervalSince(cursor.judgedAt)
            guard age >= -FleetListings.lifetime, age <= FleetListings.lifetime else {
                throw AuthorityError(.invalidArgument, "page_token is from a listing more than \(Int(FleetListings.lifetime)) s old; list again from the start")
            }
            if let kept = fleetListings.listing(judgedAt: cursor.judgedAt, staleAfter: staleAfter) {
                listing = kept
            } else {
                var judge = try await fleetJudge(staleAfter: staleAfter)
                judge.now = cursor.judgedAt
                listing = judge.listing(try await store.agentReports())
            }
        } else {
            listing = try await fleetJudge(staleAfter: staleAfter).listing(try await store.agentReports())
            fleetListings.keep(listing)
        }
        let page = listing.page(problemsOnly: problemsOnly, limit: limit, after: cursor?.position)
        return (page.agents, page.next.map { AgentListCursor(judgedAt: listing.judgedAt, position: $0) })
    }

    /// How many agents are in each state of `vouch_ca_agents`, every state present.
    public func agentStateCounts(staleAfter: TimeInterval) async throws -> [AgentState: Int] {
        let rows = try await store.agentReports()
        return try await fleetJudge(staleAfter: staleAfter).stateCounts(rows)
    }
}
