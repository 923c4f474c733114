import Foundation
import Synchronization

/// Slows token guessing: after `limit` failed enrollments for one key within `window`,
/// further attempts for it are refused until old failures age out. The authority keys
/// failures by peer host *and* token id, so guesses at one token (or malformed and unknown
/// ones) lock only that key: a neighbour behind the same address with a valid token of its
/// own is never refused.
public final class FailedAttemptLimiter: Sendable {
    private let failures = Mutex([String: [Date]]())
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

    public func check(key: String, now: Date) throws {
        let recent = failures.withLock { table -> Int in
            let kept = (table[key] ?? []).filter { now.timeIntervalSince($0) < window }
            table[key] = kept.isEmpty ? nil : kept
            return kept.count
        }
        if recent >= limit {
            throw AuthorityError(.resourceExhausted, "too many failed enrollment attempts for this token from this address; retry later")
        }
    }

    public func recordFailure(key: String, now: Date) {
        failures.withLock { table in
            // Bound memory under a flood of distinct peers: forget entries that aged out.
            if table.count > 10_000 { table = table.filter { $0.value.contains { now.timeIntervalSince($0) < window } } }
            table[key, default: []].append(now)
        }
    }
}
