import Foundation
import Synchronization

/// The latest agent listing of this replica, so the pages of one `vouch fleet list` read and judge
/// the reports once: 10,000 agents are ten pages, each otherwise a full read, judgement and sort.
/// One listing is kept (a few MB at 10,000 agents); a walk whose listing was replaced meanwhile is
/// judged again at its own instant, so its order stays the same.
final class FleetListings: Sendable {
    /// How long a page token may continue its listing.
    static let lifetime: TimeInterval = 600
    private let latest = Mutex<FleetListing?>(nil)

    func keep(_ listing: FleetListing) {
        latest.withLock { $0 = listing }
    }

    /// The kept listing judged at `judgedAt` (to the millisecond, as tokens carry it) with `staleAfter`.
    func listing(judgedAt: Date, staleAfter: TimeInterval) -> FleetListing? {
        latest.withLock { kept in
            guard let kept, kept.staleAfter == staleAfter,
                  AgentListCursor(judgedAt: kept.judgedAt, position: .start).judgedAtMilliseconds
                      == AgentListCursor(judgedAt: judgedAt, position: .start).judgedAtMilliseconds else { return nil }
            return kept
        }
    }
}

extension AgentListPosition {
    /// Before every agent.
    static let start = AgentListPosition(hasProblems: true, spiffeID: "", lineage: "")
}
