import Foundation

/// Asks the renewal loop to renew now instead of at its scheduled time: the CA dropped the
/// root the agent's own certificate chains to, and the agent keeps that root only until it
/// holds a certificate under another one.
final class RenewalWake: Sendable {
    private let requests = WakeSignal()

    init() {}

    func request() { requests.signal() }

    /// Returns at `deadline`, or earlier when a renewal is requested meanwhile (or was before).
    func sleep(until deadline: Date, on clock: any AgentClock) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await clock.sleep(until: deadline) }
            group.addTask { await self.requests.wait() }
            try await group.next()
            group.cancelAll()
        }
    }
}
