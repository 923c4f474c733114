import Foundation
import VouchAPI

/// Where a long-lived stream to the CA (WatchRevocations, WatchTrustBundle) goes after it broke.
/// A replica that failed without an answer (`ReplicaFailure.movesOn`) is left at once for the
/// next one; once every replica failed in a row, and after a refusal, the stream backs off.
struct StreamFailover {
    enum Next: Equatable {
        /// Reconnect at once to the next replica.
        case moveOn
        /// Wait `delay` seconds; then reconnect to the next replica if `nextReplica`, else the same.
        case backOff(delay: TimeInterval, nextReplica: Bool)
    }

    /// A stream open this long before it broke has worked: the next break starts afresh.
    static let settledStream: TimeInterval = 5

    private let replicas: CAReplicas
    private let schedule: RenewalSchedule
    private let call: String
    private var failures = 0
    /// Replicas still to try before backing off.
    private var untried: Int

    init(replicas: CAReplicas, schedule: RenewalSchedule, call: String) {
        self.replicas = replicas
        self.schedule = schedule
        self.call = call
        untried = replicas.count
    }

    /// The CA ended the stream (it shuts down only then): every replica is worth a try again.
    mutating func ended() {
        failures = 0
        untried = replicas.count
    }

    /// After the stream to `address`, opened at `openedAt` if it opened, failed with `error`.
    mutating func failed(_ error: any Error, at address: HostPort, openedAt: Date?, now: Date) -> Next {
        // It worked for a while before it broke: every replica is worth a try again at once. A
        // stream broken soon after it opened counts as a failed try, so replicas that accept and
        // drop streams are not cycled through without a backoff.
        if let openedAt, now.timeIntervalSince(openedAt) >= Self.settledStream { ended() }
        let failure = ReplicaFailure(error)
        let movesOn = replicas.count > 1 && failure.movesOn
        if movesOn && failure == .failedIdentityCheck {
            replicas.note(failure, of: call, at: address, error: error, next: nil)
        }
        if movesOn {
            untried -= 1
            if untried > 0 { return .moveOn }
        }
        failures += 1
        untried = replicas.count
        return .backOff(delay: schedule.backoff(failures: failures), nextReplica: movesOn)
    }
}
