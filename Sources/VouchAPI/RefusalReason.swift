import GRPCCore
import VouchAuthority

/// Refusals a client acts on, sent as the `vouch-error-reason` trailer next to the status, so
/// clients in any language need not parse messages (the agent waits for a new token on
/// `certificate-revoked`).
public enum RefusalReason: String, Sendable {
    case certificateRevoked = "certificate-revoked"
    case certificateExpired = "certificate-expired"
    case certificateSuperseded = "certificate-superseded"

    /// The trailer's name.
    public static let trailer = "vouch-error-reason"

    init(_ reason: AuthorityError.Reason) {
        switch reason {
        case .certificateRevoked: self = .certificateRevoked
        case .certificateExpired: self = .certificateExpired
        case .certificateSuperseded: self = .certificateSuperseded
        }
    }

    /// The reason a refusal carries, if any.
    public init?(of error: RPCError) {
        guard let value = Array(error.metadata[stringValues: Self.trailer]).first else { return nil }
        self.init(rawValue: value)
    }
}
