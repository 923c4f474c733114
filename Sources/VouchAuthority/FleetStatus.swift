import Foundation

/// What the CA sees wrong with an agent, judged from its latest report and the CA's own records,
/// so the CLI, the dashboard and the metric agree. Listed in this order.
public enum AgentProblem: String, Sendable, CaseIterable {
    /// The served certificate is past its notAfter (judged on the last report: such an agent
    /// cannot authenticate to report again).
    case servingExpired = "serving_expired"
    /// The served certificate is revoked (the same: a revoked agent goes silent).
    case servingRevoked = "serving_revoked"
    /// The served certificate was renewed at the CA more than `FleetJudge.supersededGrace` ago,
    /// but the agent still serves it: new files never written or never loaded.
    case servingSuperseded = "serving_superseded"
    /// The agent's bundle is not the CA's current set of roots.
    case oldBundle = "old_bundle"
    /// No report for longer than the stale threshold. Agents are never dropped, only silent.
    case silent
    /// The agent's last renewal attempt failed after its last rotation.
    case renewalFailing = "renewal_failing"
}

/// The one state `vouch_ca_agents{state}` counts an agent in: the first that applies, in this order.
public enum AgentState: String, Sendable, CaseIterable {
    case revoked, expired, superseded, silent
    case oldBundle = "old_bundle"
    case renewalFailing = "renewal_failing"
    case ok

    public init(_ problems: [AgentProblem]) {
        let held = Set(problems)
        let order: [(AgentProblem, AgentState)] = [(.servingRevoked, .revoked), (.servingExpired, .expired),
                                                   (.servingSuperseded, .superseded), (.silent, .silent),
                                                   (.oldBundle, .oldBundle), (.renewalFailing, .renewalFailing)]
        self = order.first { held.contains($0.0) }?.1 ?? .ok
    }
}

/// An agent's stored report with the problems judged at one instant.
public struct JudgedAgent: Sendable, Equatable {
    public var row: AgentReportRow
    public var problems: [AgentProblem]

    public init(row: AgentReportRow, problems: [AgentProblem]) {
        self.row = row
        self.problems = problems
    }

    /// Listing order: agents with problems first, then by SPIFFE ID, then lineage.
    public var position: AgentListPosition {
        AgentListPosition(hasProblems: !problems.isEmpty, spiffeID: row.spiffeID, lineage: row.lineage)
    }
}

/// Judges agents' reports at `now`. Pure: the clock and the CA's roots are given.
public struct FleetJudge: Sendable {
    /// A report older than this makes an agent silent unless the caller says otherwise.
    public static let defaultStaleAfter: TimeInterval = 600
    /// How long after its renewal a served certificate counts as superseded: a heartbeat may race
    /// the rotation's own report.
    public static let supersededGrace: TimeInterval = 60

    public var now: Date
    public var staleAfter: TimeInterval
    /// Serials of the roots that are not retired (a prepared one included): the bundle agents should hold.
    public var currentRoots: Set<String>
    /// The generation that created the newest of those roots: an agent reporting no root serials
    /// holds the current bundle if its generation is at least this.
    public var newestRootGeneration: Int64

    public init(now: Date, staleAfter: TimeInterval = defaultStaleAfter, currentRoots: Set<String>, newestRootGeneration: Int64) {
        self.now = now
        self.staleAfter = staleAfter
        self.currentRoots = currentRoots
        self.newestRootGeneration = newestRootGeneration
    }

    /// Judges against the roots of `issuers`.
    public init(now: Date, staleAfter: TimeInterval = defaultStaleAfter, issuers: IssuerSet) {
        let roots = issuers.roots
        self.init(now: now, staleAfter: staleAfter, currentRoots: Set(roots.map(\.serial)),
                  newestRootGeneration: roots.map(\.createdGeneration).max() ?? 0)
    }

    public func problems(of row: AgentReportRow) -> [AgentProblem] {
        var problems: [AgentProblem] = []
        let report = row.report
        // Without the certificate in the CA's records, the agent's own notAfter is all there is.
        let notAfter = row.served?.notAfter ?? Date(timeIntervalSince1970: TimeInterval(report.servingNotAfter))
        if notAfter <= now { problems.append(.servingExpired) }
        if row.served?.revokedAt != nil { problems.append(.servingRevoked) }
        if let served = row.served, served.supersededBy != nil,
           served.successorIssuedAt.map({ now.timeIntervalSince($0) > Self.supersededGrace }) ?? true {
            problems.append(.servingSuperseded)
        }
        if holdsOldBundle(report) { problems.append(.oldBundle) }
        if now.timeIntervalSince(row.reportedAt) > staleAfter { problems.append(.silent) }
        if !report.lastError.isEmpty, report.lastErrorAt > report.lastRotation { problems.append(.renewalFailing) }
        return problems
    }

    func holdsOldBundle(_ report: AgentReportRecord) -> Bool {
        if report.rootSerials.isEmpty { return report.trustGeneration < newestRootGeneration }
        return Set(report.rootSerials) != currentRoots
    }

    public func judge(_ row: AgentReportRow) -> JudgedAgent {
        JudgedAgent(row: row, problems: problems(of: row))
    }

    /// How many agents are in each state; every state is present, 0 included.
    public func stateCounts(_ rows: [AgentReportRow]) -> [AgentState: Int] {
        var counts = Dictionary(uniqueKeysWithValues: AgentState.allCases.map { ($0, 0) })
        for row in rows { counts[AgentState(problems(of: row)), default: 0] += 1 }
        return counts
    }

    /// Every agent judged, in listing order: what the pages of one listing are cut from.
    public func listing(_ rows: [AgentReportRow]) -> FleetListing {
        FleetListing(judgedAt: now, staleAfter: staleAfter, agents: rows.map(judge).sorted { $0.position < $1.position })
    }

    /// One page of judged agents in listing order, after `position` (nil: from the start), and the
    /// position to continue from when more follow.
    public func page(_ rows: [AgentReportRow], problemsOnly: Bool, limit: Int,
                     after position: AgentListPosition?) -> (agents: [JudgedAgent], next: AgentListPosition?) {
        listing(rows).page(problemsOnly: problemsOnly, limit: limit, after: position)
    }
}

/// All agents judged at one instant and sorted. The pages of one `vouch fleet list` are cut from
/// one listing, so a walk reads and judges the reports once (not once per page), and an agent
/// whose problems change meanwhile is neither skipped nor listed twice.
public struct FleetListing: Sendable {
    public let judgedAt: Date
    public let staleAfter: TimeInterval
    public let agents: [JudgedAgent]

    public func page(problemsOnly: Bool, limit: Int, after position: AgentListPosition?) -> (agents: [JudgedAgent], next: AgentListPosition?) {
        // The first agent past `position`, by binary search: the agents are in listing order.
        var low = 0, high = agents.count
        if let position {
            while low < high {
                let middle = (low + high) / 2
                if position < agents[middle].position { high = middle } else { low = middle + 1 }
            }
        }
        var page: [JudgedAgent] = []
        var index = low
        while index < agents.count, page.count < limit {
            if !problemsOnly || !agents[index].problems.isEmpty { page.append(agents[index]) }
            index += 1
        }
        let more = agents[index...].contains { !problemsOnly || !$0.problems.isEmpty }
        return (page, more ? page.last?.position : nil)
    }
}

/// Where a page ended and which listing it was cut from, as `next_page_token` carries it.
public struct AgentListCursor: Sendable, Equatable {
    /// The listing's judging instant, in milliseconds since 1970.
    public var judgedAtMilliseconds: Int64
    public var position: AgentListPosition

    public init(judgedAt: Date, position: AgentListPosition) {
        judgedAtMilliseconds = Int64((judgedAt.timeIntervalSince1970 * 1000).rounded(.down))
        self.position = position
    }

    public var judgedAt: Date { Date(timeIntervalSince1970: TimeInterval(judgedAtMilliseconds) / 1000) }

    /// `<milliseconds> <position token>`.
    public var token: String { "\(judgedAtMilliseconds) \(position.token)" }

    public init?(token: String) {
        let parts = token.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].utf8.allSatisfy({ (0x30...0x39).contains($0) }), let milliseconds = Int64(parts[0]),
              let position = AgentListPosition(token: String(parts[1])) else { return nil }
        judgedAtMilliseconds = milliseconds
        self.position = position
    }
}

/// Where a page of the agent listing ended, as `next_page_token` carries it.
public struct AgentListPosition: Sendable, Equatable, Comparable {
    public var hasProblems: Bool
    public var spiffeID: String
    public var lineage: String

    public init(hasProblems: Bool, spiffeID: String, lineage: String) {
        self.hasProblems = hasProblems
        self.spiffeID = spiffeID
        self.lineage = lineage
    }

    public static func < (lhs: AgentListPosition, rhs: AgentListPosition) -> Bool {
        // Byte order, as the stores sort text: the same on every replica.
        if lhs.hasProblems != rhs.hasProblems { return lhs.hasProblems }
        if !lhs.spiffeID.utf8.elementsEqual(rhs.spiffeID.utf8) { return lhs.spiffeID.utf8.lexicographicallyPrecedes(rhs.spiffeID.utf8) }
        return lhs.lineage.utf8.lexicographicallyPrecedes(rhs.lineage.utf8)
    }

    /// `<0|1> <lineage> <SPIFFE ID>`: a SPIFFE ID holds no space, a lineage is hex.
    public var token: String { "\(hasProblems ? 1 : 0) \(lineage) \(spiffeID)" }

    public init?(token: String) {
        let parts = token.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "0" || parts[0] == "1", !parts[1].isEmpty,
              parts[1].utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        self.init(hasProblems: parts[0] == "1", spiffeID: String(parts[2]), lineage: String(parts[1]))
    }
}
