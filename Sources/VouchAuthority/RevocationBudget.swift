import Foundation

/// How many of its own certificates an identity may still revoke: every revocation grows the
/// CRL every relying party downloads. Stores check it inside the transaction that revokes, so
/// calls in flight together (or on several replicas) cannot all pass it.
public struct RevocationBudget: Sendable {
    /// The identity whose revocations count.
    public let actor: String
    /// Audit actions that each record one revocation the identity caused.
    public let actions: [AuditAction]
    public let since: Date
    public let limit: Int
    /// The window, for the refusal message.
    let window: TimeInterval

    /// Audit actions of revocations an identity causes itself: a revoke call, the renewals a
    /// keyCompromise takes with it, and the child a renewal retry replaces.
    public static let selfRevocationActions: [AuditAction] = [.revoke, .revokeLineage, .revokeSuperseded]

    public init(actor: String, now: Date, window: TimeInterval, limit: Int) {
        self.actor = actor
        self.actions = Self.selfRevocationActions
        self.since = now.addingTimeInterval(-window)
        self.window = window
        self.limit = limit
    }

    /// Throws `resourceExhausted` when `made` revocations in the window plus `adding` pass the limit.
    public func check(made: Int, adding: Int) throws {
        guard adding > 0, made + adding > limit else { return }
        throw AuthorityError(.resourceExhausted, "\(actor) has revoked \(made) of its certificates in the last "
            + "\(Int(window))s and this would revoke \(adding) more, past the limit of \(limit); ask an admin")
    }
}
