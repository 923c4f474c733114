import VouchAuthority

/// Audit-row budgets for refusals: one for callers without a client certificate (anyone can send
/// those at will), one for callers with one, so a flood of the first cannot crowd a workload's or
/// an admin's refusals out of the audit log. Refused TLS handshakes spend the anonymous budget:
/// no identity was established.
public struct RefusalAuditLimits: Sendable {
    public let anonymous: RateLimitedLog
    public let identified: RateLimitedLog

    public init(anonymous: RateLimitedLog = RateLimitedLog(burst: 60, perSecond: 1),
                identified: RateLimitedLog = RateLimitedLog(burst: 60, perSecond: 1)) {
        self.anonymous = anonymous
        self.identified = identified
    }

    public func budget(for caller: Caller) -> RateLimitedLog {
        caller.spiffeID == nil ? anonymous : identified
    }
}
