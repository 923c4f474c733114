import Foundation

/// Where a root rollover stands and whether its next stage is safe: what `vouch ca root status`
/// prints and what `activate` and `retire` check. Pure: computed from the issuers and the counts
/// the store made for the old root.
public struct RolloverStatus: Sendable, Equatable {
    public enum Stage: String, Sendable {
        /// No rollover: one root, active.
        case none
        /// A new root is pending: in the bundle, not signing.
        case prepared
        /// The new root signs; the old one is retiring.
        case activated
    }

    /// The next command, whether it is safe now, why (or why not), and when time alone makes it safe.
    public struct Next: Sendable, Equatable {
        public var command: String
        public var safe: Bool
        public var reason: String
        public var safeAt: Date?
    }

    public var stage: Stage
    public var generation: Int64
    /// The root being replaced (active while prepared, retiring once activated); nil without a rollover.
    public var oldRoot: IssuerRecord?
    /// The pending or newly active root; the active root without a rollover.
    public var newRoot: IssuerRecord?
    public var counts: RolloverCounts
    public var next: Next

    /// The stage and the two roots it concerns. Which root `rolloverCounts` should count for is
    /// `oldRoot`, from `newRoot.createdGeneration` on.
    public static func roots(of snapshot: IssuerSnapshot) -> (stage: Stage, old: IssuerRecord?, new: IssuerRecord?) {
        let roots = snapshot.issuers.filter { $0.kind == .root }
        if let pending = roots.last(where: { $0.state == .pending }) {
            return (.prepared, snapshot.activeRoot, pending)
        }
        if let retiring = roots.last(where: { $0.state == .retiring }) {
            return (.activated, retiring, snapshot.activeRoot)
        }
        return (.none, nil, snapshot.activeRoot)
    }

    public static func compute(_ snapshot: IssuerSnapshot, counts: RolloverCounts) -> RolloverStatus {
        let (stage, old, new) = roots(of: snapshot)
        let next: Next
        switch stage {
        case .none:
            next = Next(command: "vouch ca root prepare", safe: true, reason: "no rollover in progress", safeAt: nil)
        case .prepared:
            let waiting = counts.unconfirmedAgents
            next = Next(command: "vouch ca root activate", safe: waiting == 0,
                        reason: waiting == 0 ? "every live agent holds the new root" : unconfirmedReason(counts), safeAt: nil)
        case .activated:
            var blockers: [String] = []
            if counts.rootCertificates > 0 {
                let last = counts.rootLatestNotAfter.map { " (the last expires \(iso8601($0)))" } ?? ""
                blockers.append("\(counted(counts.rootCertificates, "live certificate")) still "
                    + "\(counts.rootCertificates == 1 ? "chains" : "chain") only to the old root\(last)")
            }
            if counts.unconfirmedAgents > 0 {
                blockers.append("\(counted(counts.unconfirmedAgents, "agent")) \(counts.unconfirmedAgents == 1 ? "has" : "have") not confirmed")
            }
            // Only time is left: every lineage renews from the new intermediate, so the count reaches 0 by then.
            let safeAt = counts.unconfirmedAgents == 0 && counts.rootCertificates > 0 ? counts.rootLatestNotAfter : nil
            next = Next(command: "vouch ca root retire", safe: blockers.isEmpty,
                        reason: blockers.isEmpty ? "no live certificate depends on the old root" : blockers.joined(separator: "; "),
                        safeAt: safeAt)
        }
        return RolloverStatus(stage: stage, generation: snapshot.generation, oldRoot: old, newRoot: new, counts: counts, next: next)
    }

    /// `2 live agents have not confirmed the new bundle (first: spiffe://…, serial ab…)`.
    static func unconfirmedReason(_ counts: RolloverCounts) -> String {
        let n = counts.unconfirmedAgents
        let first = counts.unconfirmedSample.first.map { " (first: \($0.spiffeID), serial \($0.serial))" } ?? ""
        return "\(counted(n, "live agent")) \(n == 1 ? "has" : "have") not confirmed the new bundle\(first)"
    }

    /// The refusal of `activate` without `--force`, nil when it is safe.
    public var activateRefusal: String? {
        guard stage == .prepared, !next.safe else { return nil }
        return "\(next.reason); --force activates anyway: OpenSSL-based peers without the new root will refuse new certificates"
    }

    /// The refusal of `retire` without `--force`, nil when it is safe.
    public var retireRefusal: String? {
        guard stage == .activated, !next.safe else { return nil }
        return "\(next.reason); --force retires anyway: those certificates fail at every peer that drops the old root"
    }

    static func counted(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
}

/// RFC 3339 in UTC, whole seconds: 2026-11-27T10:20:00Z.
func iso8601(_ date: Date) -> String { date.formatted(.iso8601) }
