import Foundation

/// The agent's sense of time: what time it is, and waiting until a moment. Every schedule in
/// the agent (renewal, backoff, expiry, polling the token file, CRL refresh) goes through one,
/// so tests can run a rotation by moving a clock instead of waiting out a certificate lifetime.
public protocol AgentClock: Sendable {
    var now: Date { get }
    /// Returns at `deadline`, or throws `CancellationError` when the task is cancelled first.
    func sleep(until deadline: Date) async throws
}

extension AgentClock {
    func sleep(for seconds: TimeInterval) async throws {
        try await sleep(until: now.addingTimeInterval(seconds))
    }
}

/// Wall-clock time.
public struct SystemAgentClock: AgentClock {
    public init() {}

    public var now: Date { Date() }

    public func sleep(until deadline: Date) async throws {
        let interval = deadline.timeIntervalSinceNow
        if interval > 0 { try await Task.sleep(for: .milliseconds(Int64((interval * 1000).rounded(.up)))) }
        try Task.checkCancellation()
    }
}
