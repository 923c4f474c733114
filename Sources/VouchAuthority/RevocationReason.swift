/// RFC 5280 CRLReason codes a revocation may carry (7 is unassigned; 8, removeFromCRL, belongs to
/// delta CRLs, which Vouch does not publish). Stored and sent as the code.
public enum RevocationReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    case unspecified = 0
    case keyCompromise = 1
    case cACompromise = 2
    case affiliationChanged = 3
    case superseded = 4
    case cessationOfOperation = 5
    case certificateHold = 6
    case privilegeWithdrawn = 9
    case aACompromise = 10

    /// The name RFC 5280 gives it, e.g. `keyCompromise`.
    public var description: String {
        switch self {
        case .unspecified: return "unspecified"
        case .keyCompromise: return "keyCompromise"
        case .cACompromise: return "cACompromise"
        case .affiliationChanged: return "affiliationChanged"
        case .superseded: return "superseded"
        case .cessationOfOperation: return "cessationOfOperation"
        case .certificateHold: return "certificateHold"
        case .privilegeWithdrawn: return "privilegeWithdrawn"
        case .aACompromise: return "aACompromise"
        }
    }

    /// A code or a name in any case: `1`, `keyCompromise`, `keycompromise`.
    public init?(text: String) {
        if let code = Int(text) {
            self.init(rawValue: code)
        } else if let reason = Self.allCases.first(where: { $0.description.lowercased() == text.lowercased() }) {
            self = reason
        } else {
            return nil
        }
    }
}
