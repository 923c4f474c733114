import Foundation
import Synchronization

/// Slows token guessing: after `limit` failed enrollments for one key within `window`,
/// further attempts for it are refused until old failures age out. The authority keys
/// failures by peer host *and* token id, so guesses at one token (or malformed and unknown
/// ones) lock only that key: a neighbour behind the same address with a valid token of its
/// own is never refused.
///
/// An attempt counts as a failure from the moment it begins until it is judged a success,
/// so guesses sent in parallel cannot all pass the check before any failure is recorded.
public final class FailedAttemptLimiter: Sendable {
    /// An attempt begun and not yet judged; `succeeded` takes it back.
    public struct Attempt: Sendable {
        let key: String
        let id: UInt64
    }

    private struct Entry {
        let id: UInt64
        let at: Date
    }

    private struct State {
        var entries: [String: [Entry]] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())
    let limit: Int
    let window: TimeInterval

    public init(limit: Int, window: TimeInterval) {
        self.limit = limit
        self.window = window
    }

    /// The host part of a gRPC peer such as `ipv4:127.0.0.1:5555` or `ipv6:[::1]:5555`.
    static func host(of peer: String) -> String {
        guard let colon = peer.lastIndex(of: ":") else { return peer }
        return String(peer[..<colon])
    }

    /// The limiter key for an attempt from `peer` at `tokenID` (nil: malformed or unknown token).
    public static func key(peer: String, tokenID: String?) -> String {
        host(of: peer) + "|" + (tokenID ?? "?")
    }

    /// Refuses the attempt if `limit` failures (or attempts still being judged) are recent for
    /// `key`; otherwise counts it as a failure until `succeeded`.
    public func begin(key: String, now: Date) throws -> Attempt {
        let attempt: Attempt? = state.withLock { state in
            // Bound memory under a flood of distinct peers: forget entries that aged out.
            if state.entries.count > 10_000 {
                state.entries = state.entries.filter { $0.value.contains { now.timeIntervalSince($0.at) < window } }
            }
            let recent = (state.entries[key] ?? []).filter { now.timeIntervalSince($0.at) < window }
            guard recent.count < limit else {
                state.entries[key] = recent
                return nil
            }
            state.nextID += 1
            state.entries[key] = recent + [Entry(id: state.nextID, at: now)]
            return Attempt(key: key, id: state.nextID)
        }
        guard let attempt else {
            throw AuthorityError(.resourceExhausted, "too many failed enrollment attempts for this token from this address; retry later")
        }
        return attempt
    }

    /// The attempt succeeded: it no longer counts.
    public func succeeded(_ attempt: Attempt) {
        state.withLock { state in
            state.entries[attempt.key]?.removeAll { $0.id == attempt.id }
            if state.entries[attempt.key]?.isEmpty == true { state.entries[attempt.key] = nil }
        }
    }
}
