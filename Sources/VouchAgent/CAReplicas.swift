import Logging
import Metrics
import Synchronization
import VouchAPI

/// The CA replicas the agent talks to and which one it uses. Every call (enroll, renew, CRL
/// fetch, the revocation stream) starts with the replica that last answered, so a healthy
/// replica keeps the traffic and a dead one costs at most one failed connect per call (the
/// call that finds it dead), not one on every call. Shared by the renewal and the revocation
/// parts of an agent, so a replica one of them found dead is not tried first by the other.
final class CAReplicas: Sendable {
    let addresses: [HostPort]
    private let activeIndex = Mutex(0)
    private let logger: Logger
    private let state: AgentState?
    /// 1 for the replica in use, 0 for the others.
    private let gauges: [Gauge]

    init(_ list: CAAddressList, logger: Logger, state: AgentState? = nil) {
        addresses = list.addresses
        self.logger = logger
        self.state = state
        gauges = list.addresses.map { Gauge(label: "vouch_agent_ca_replica_active", dimensions: [("address", "\($0)")]) }
        show(0)
    }

    var count: Int { addresses.count }

    /// The replica that last answered (the first one until then).
    var active: HostPort { addresses[activeIndex.withLock { $0 }] }

    /// The replica tried after `address` when it fails.
    func address(after address: HostPort) -> HostPort {
        let index = addresses.firstIndex(of: address) ?? 0
        return addresses[(index + 1) % addresses.count]
    }

    /// `address` answered: it is the one to start with from now on.
    func answered(by address: HostPort) {
        guard let index = addresses.firstIndex(of: address) else { return }
        let previous: Int = activeIndex.withLock { active in
            defer { active = index }
            return active
        }
        guard previous != index else { return }
        logger.info("CA replica changed", metadata: ["from": "\(addresses[previous])", "to": "\(address)"])
        show(index)
    }

    private func show(_ index: Int) {
        for (position, gauge) in gauges.enumerated() { gauge.record(position == index ? 1 : 0) }
        let address = "\(addresses[index])"
        state?.update { $0.caAddress = address }
    }

    /// Runs `body` against each replica in turn, starting with the active one, until one
    /// answers; returns that answer. A refusal or any other answer is final and thrown as it is.
    /// Failures that say nothing about the request (`ReplicaFailure.movesOn`) move to the next
    /// replica; when all of them failed so, the error names each address and its failure. Each
    /// attempt carries its own deadline, so a call takes at most `count` deadlines; the caller's
    /// backoff applies once all failed. With one address, its error is thrown unchanged.
    func call<Result: Sendable>(_ what: String, _ body: (HostPort) async throws -> Result) async throws -> Result {
        let start = activeIndex.withLock { $0 }
        var attempts: [CAReplicasUnreachable.Attempt] = []
        for offset in 0..<addresses.count {
            let address = addresses[(start + offset) % addresses.count]
            do {
                let result = try await body(address)
                answered(by: address)
                return result
            } catch {
                let failure = ReplicaFailure(error)
                guard addresses.count > 1, failure.movesOn, !isShutdown(error) else {
                    if !failure.movesOn { answered(by: address) }
                    throw error
                }
                attempts.append(.init(address: address, reason: describe(error)))
                note(failure, of: what, at: address, error: error,
                     next: offset + 1 < addresses.count ? addresses[(start + offset + 1) % addresses.count] : nil)
            }
        }
        throw CAReplicasUnreachable(attempts: attempts)
    }

    /// Logs a replica that gave no answer; a failed identity check loudly, as it may be an impostor.
    func note(_ failure: ReplicaFailure, of what: String, at address: HostPort, error: any Error, next: HostPort?) {
        var metadata: Logger.Metadata = ["call": "\(what)", "address": "\(address)", "error": "\(describe(error))"]
        if let next { metadata["next"] = "\(next)" }
        if failure == .failedIdentityCheck {
            logger.error("CA replica failed the server identity check; not using it (check its certificate and --ca-spiffe-id)",
                         metadata: metadata)
        } else {
            logger.notice(next == nil ? "CA replica did not answer" : "CA replica did not answer; trying the next", metadata: metadata)
        }
    }
}
