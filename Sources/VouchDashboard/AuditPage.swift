import VouchAPI

/// `/audit`: the newest audit events, and whether the CA finds its hash chain intact.
enum AuditPage {
    static let tailLength = 50

    static func load(_ reader: any AdminReader) async throws -> Page {
        var verification: Vouch_V1_AuditLogVerification?
        var unavailable = ""
        do {
            verification = try await reader.verifyAuditLog()
        } catch where error.isUnavailableCall {
            unavailable = error.pageDescription
        }
        let head: Int64
        if let verification { head = verification.headRowID } else { head = try await AuditTail.head(reader) }
        // Reads after the head too: the reads of this page are audited themselves.
        // No overflow whatever id the CA names: a negative or huge head cannot crash the dashboard.
        let from = head > Int64(tailLength) ? head - Int64(tailLength) : 0
        let events = try await reader.auditEvents(after: from, limit: 1000).suffix(tailLength).reversed()
        let rows = events.map { event in
            el("tr", ["data-id": "\(event.id)"],
               cell("\(event.id)", "number"),
               cell(DashboardTime.text(event.time), "mono"),
               cell(event.actor, "spiffe"),
               cell(event.action),
               cell(event.subject, "mono"),
               cell(event.peer, "mono"),
               cell(event.detail, "detail"))
        }
        return Page(title: "Audit log", content: [
            state(verification, unavailable: unavailable),
            el("h2", [:], text("Newest \(tailLength) events")),
            table("audit", headers: ["Id", "Time", "Actor", "Action", "Subject", "Peer", "Detail"], numeric: ["Id"], rows: Array(rows),
                  empty: "The audit log is empty."),
        ])
    }

    static func state(_ verification: Vouch_V1_AuditLogVerification?, unavailable: String) -> HTML {
        guard let verification else {
            return el("div", ["class": "verification", "id": "audit-verification", "data-state": "unavailable"],
                      el("strong", ["class": "state-unavailable"], "Verification unavailable"),
                      text(": the CA does not answer Admin/VerifyAuditLog (\(unavailable)). `vouch audit verify` on the CA host checks the chain."))
        }
        let checkpoint = verification.hasLatestCheckpoint
            ? " Latest signed checkpoint: row \(verification.latestCheckpoint.rowID), signed by \(verification.latestCheckpoint.signer) at \(DashboardTime.text(verification.latestCheckpoint.time))."
            : " No checkpoint was taken yet."
        if verification.intact {
            return el("div", ["class": "verification", "id": "audit-verification", "data-state": "intact"],
                      el("strong", ["class": "state-ok"], "Chain intact"),
                      text(": rows \(verification.verifiedFromRowID) to \(verification.headRowID) chain." + checkpoint))
        }
        let row = verification.brokenRowID == 0 ? "" : " at row \(verification.brokenRowID)"
        return el("div", ["class": "verification", "id": "audit-verification", "data-state": "broken"],
                  el("strong", ["class": "state-broken"], text("Chain broken\(row)")),
                  text(": \(verification.problem)" + checkpoint))
    }
}

/// The newest audit row id without Admin/VerifyAuditLog: ids only grow, so probing pages of
/// 1000 at doubling offsets, then halving, finds it in a few calls instead of reading the whole log.
enum AuditTail {
    static let page: Int32 = 1000

    static func head(_ reader: any AdminReader) async throws -> Int64 {
        var low: Int64 = 0, high: Int64 = 0
        // Once past the first page: row `low` exists.
        var step = Int64(page)
        // Ids are Int64 and each round doubles the step: 63 rounds pass any id. A CA whose ids do
        // not grow past what was asked, or run past Int64.max, gets its last id as the head.
        for _ in 0..<63 {
            let events = try await reader.auditEvents(after: high, limit: page)
            if events.count < page {
                if let last = events.last { return last.id }
                return high == 0 ? 0 : try await between(reader, low, high)
            }
            low = events.last!.id
            let (next, overflow) = low.addingReportingOverflow(step)
            guard low > high, !overflow else { return low }
            high = next
            step = step.multipliedReportingOverflow(by: 2).overflow ? .max : step * 2
        }
        return low
    }

    /// Row `lowBound` exists, none after `highBound`.
    private static func between(_ reader: any AdminReader, _ lowBound: Int64, _ highBound: Int64) async throws -> Int64 {
        var low = lowBound, high = highBound
        while high - low > 1 {
            let middle = low + (high - low) / 2
            let events = try await reader.auditEvents(after: middle, limit: page)
            if events.isEmpty { high = middle } else if events.count < page { return events.last!.id } else {
                // Within (middle, high] from a CA that keeps its order; otherwise the search ends here.
                guard let last = events.last?.id, last > middle, last <= high else { return low }
                low = last
            }
        }
        return try await reader.auditEvents(after: low, limit: page).last?.id ?? low
    }
}
