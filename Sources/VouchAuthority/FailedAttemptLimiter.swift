import Foundation
import Synchronization

/// Slows token guessing: after `limit` failed enrollments from one peer host
/// within `window`, further attempts from it are refused until old failures age out.
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

    public func check(peer: String, now: Date) throws {
        let key = Self.host(of: peer)
        let recent = failures.withLock { table -> Int in
            let kept = (table[key] ?? []).filter { now.timeIntervalSince($0) < window }
            table[key] = kept.isEmpty ? nil : kept
            return kept.count
        }
        if recent >= limit {
            throw AuthorityError(.resourceExhausted, "too many failed enrollment attempts from this address; retry later")
        }
    }

    public func recordFailure(peer: String, now: Date) {
        let key = Self.host(of: peer)
        failures.withLock { table in
            // Bound memory under a flood of distinct peers: forget entries that aged out.
            if table.count > 10_000 { table = table.filter { $0.value.contains { now.timeIntervalSince($0) < window } } }
            table[key, default: []].append(now)
        }
    }
}
