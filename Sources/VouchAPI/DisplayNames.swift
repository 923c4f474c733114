import VouchAuthority

// The names the CLI (tables and --json) and the dashboard print for API enums: one place, so
// `vouch fleet list --json`, `vouch cert list --json` and the pages always agree.

extension Vouch_V1_AgentProblem {
    /// `serving_revoked`, `silent`, ...: the authority's own name of the problem.
    public var name: String {
        if let problem = AgentProblem.allCases.first(where: { Vouch_V1_AgentProblem($0) == self }) { return problem.rawValue }
        return self == .unspecified ? "unspecified" : "unknown_\(rawValue)"
    }
}

extension Vouch_V1_CertificateStatus {
    /// `active`, `revoked`, `expired`; `unknown` for anything else.
    public var name: String {
        switch self {
        case .active: "active"
        case .revoked: "revoked"
        case .expired: "expired"
        default: "unknown"
        }
    }
}
