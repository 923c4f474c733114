/// A store that several CA processes share, and that can tell each of them when any one of them has
/// committed revocations. Only such stores implement it: with a store of one process (SQLite, memory)
/// every revocation goes through this process's `CertificateAuthority`, which records it itself.
public protocol RevocationChangeFeed: Sendable {
    /// Opens a session of its own that listens for committed revocations, calls `listening` once it
    /// listens (every commit from then on is announced), then `announced` with the highest sequence
    /// number of each transaction that revoked, until the task is cancelled (returns) or the session
    /// fails (throws). The session is checked every `heartbeat`; one that does not answer within
    /// another `heartbeat` counts as failed, so a connection lost without a word is noticed.
    /// Announcements say only that something was committed: the caller reads the revocations
    /// themselves from the store, after the last sequence it read.
    func followRevocations(heartbeat: Duration, listening: @escaping @Sendable () async -> Void,
                           announced: @escaping @Sendable (Int64) async -> Void) async throws

    /// As the other `followRevocations`, and on the same session `issuersChanged` with the new
    /// issuer generation each time a transaction that changed the issuers commits (an
    /// unreadable announcement is `Int64.max`: read the generation).
    func followRevocations(heartbeat: Duration, listening: @escaping @Sendable () async -> Void,
                           announced: @escaping @Sendable (Int64) async -> Void,
                           issuersChanged: @escaping @Sendable (Int64) async -> Void) async throws
}

extension RevocationChangeFeed {
    /// A feed that does not announce issuer changes: followers poll the generation.
    public func followRevocations(heartbeat: Duration, listening: @escaping @Sendable () async -> Void,
                                  announced: @escaping @Sendable (Int64) async -> Void,
                                  issuersChanged: @escaping @Sendable (Int64) async -> Void) async throws {
        try await followRevocations(heartbeat: heartbeat, listening: listening, announced: announced)
    }
}
