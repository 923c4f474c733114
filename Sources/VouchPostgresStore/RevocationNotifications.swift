import Logging
import PostgresNIO
import Synchronization
import VouchAuthority

/// Revocations committed by any replica, announced with LISTEN/NOTIFY: every transaction that
/// revokes notifies the channel with its highest sequence number, which PostgreSQL delivers to
/// every listening session when (and only if) it commits. Issuer changes are announced the same
/// way on `vouch_issuers` (with the new generation), heard on the same session.
extension PostgresAuthorityStore: RevocationChangeFeed {
    static let revocationChannel = "vouch_revocations"
    /// The listening session's application_name.
    public static let listenerName = "vouch revocation listener"

    /// Inside a writing transaction that has just inserted revocations: tells listeners at commit.
    /// Under the writer lock no one else inserts, so the highest sequence is this transaction's.
    static func announceRevocations(on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("""
            SELECT pg_notify(\(revocationChannel), (SELECT max(sequence) FROM revocation)::text)
            """, logger: logger)
    }

    /// Listens on a connection of its own, not the pool's: a pooled one would go back to the pool,
    /// or be closed by it, and stop hearing.
    public func followRevocations(heartbeat: Duration, listening: @escaping @Sendable () async -> Void,
                                  announced: @escaping @Sendable (Int64) async -> Void) async throws {
        try await followRevocations(heartbeat: heartbeat, listening: listening, announced: announced, issuersChanged: { _ in })
    }

    public func followRevocations(heartbeat: Duration, listening: @escaping @Sendable () async -> Void,
                                  announced: @escaping @Sendable (Int64) async -> Void,
                                  issuersChanged: @escaping @Sendable (Int64) async -> Void) async throws {
        let logger = self.logger
        let connection: PostgresConnection
        do {
            var configuration = session
            // Named, so an operator sees it in pg_stat_activity (and may end it: it comes back).
            configuration.options.additionalStartupParameters.append(("application_name", Self.listenerName))
            // PostgresNIO logs each failed attempt; the follower reports an outage once.
            var quiet = logger
            quiet.logLevel = .error
            connection = try await Self.connectUnlessCancelled(configuration, logger: quiet)
        } catch is CancellationError {
            return
        } catch {
            throw PostgresStoreError("PostgreSQL revocation notifications", error)
        }
        let silence = Silence()
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Armed before the LISTENs, which have no deadline of their own: a session that stops
                // answering before it listens is given up too (the heartbeat's query waits behind them).
                group.addTask { try await Self.checkAlive(connection, every: heartbeat, silence: silence, logger: logger) }
                group.addTask {
                    try await Self.relayNotifications(on: connection, listening: listening, announced: announced,
                                                      issuersChanged: issuersChanged)
                }
                // Either ends the session.
                try await group.next()
                group.cancelAll()
            }
        } catch {
            try? await connection.close()
            if Task.isCancelled { return }
            // The heartbeat's close fails the notifications too, often first: say why it closed.
            if let silent = silence.noticed { throw silent }
            throw PostgresStoreError("PostgreSQL revocation notifications", error)
        }
        try? await connection.close()
        if !Task.isCancelled { throw PostgresStoreError("PostgreSQL revocation notifications", "the listening session ended") }
    }

    /// Listens on both channels, then hands on what they announce until the session ends.
    static func relayNotifications(on connection: PostgresConnection, listening: @escaping @Sendable () async -> Void,
                                   announced: @escaping @Sendable (Int64) async -> Void,
                                   issuersChanged: @escaping @Sendable (Int64) async -> Void) async throws {
        try await connection.listen(on: revocationChannel) { notifications in
            try await connection.listen(on: issuerChannel) { issuerNotifications in
                await listening()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await notification in notifications {
                            // Any payload means "something was committed"; an unreadable one asks for a read.
                            await announced(Int64(notification.payload) ?? .max)
                        }
                    }
                    group.addTask {
                        for try await notification in issuerNotifications {
                            await issuersChanged(Int64(notification.payload) ?? .max)
                        }
                    }
                    // Either ends the session: the notifications end on cancellation or a lost connection.
                    try await group.next()
                    group.cancelAll()
                }
            }
        }
    }

    /// Runs a trivial query every `heartbeat`; a connection that does not answer within another
    /// `heartbeat` (a peer gone without closing TCP) is closed and this throws.
    static func checkAlive(_ connection: PostgresConnection, every heartbeat: Duration, silence: Silence,
                           logger: Logger) async throws {
        while true {
            try await Task.sleep(for: heartbeat)
            let answered = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await connection.query("SELECT 1", logger: logger)
                    return true
                }
                group.addTask {
                    try await Task.sleep(for: heartbeat)
                    return false
                }
                let answered = try await group.next() ?? false
                if !answered {
                    silence.notice(PostgresStoreError("PostgreSQL revocation notifications",
                                                      "no answer on the listening session within \(heartbeat)"))
                    // Closing fails the query still waiting, so the group can end.
                    try? await connection.close()
                }
                group.cancelAll()
                return answered
            }
            if !answered, let silent = silence.noticed { throw silent }
        }
    }

    /// Connects, or throws `CancellationError` as soon as the task is cancelled: PostgresNIO's
    /// connect waits out its connect timeout regardless, and shutdown must not. A connection that
    /// arrives after the cancellation is closed.
    static func connectUnlessCancelled(_ configuration: PostgresConnection.Configuration,
                                       logger: Logger) async throws -> PostgresConnection {
        let outcome = ConnectOutcome()
        let attempt = Task {
            do {
                let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
                if !outcome.resume(with: .success(connection)) { try? await connection.close() }
            } catch {
                _ = outcome.resume(with: .failure(error))
            }
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                outcome.wait(continuation)
            }
        } onCancel: {
            attempt.cancel()
            _ = outcome.resume(with: .failure(CancellationError()))
        }
    }
}

/// Why the heartbeat closed the listening session, if it did.
final class Silence: Sendable {
    private let reason = Mutex<PostgresStoreError?>(nil)

    var noticed: PostgresStoreError? { reason.withLock { $0 } }

    func notice(_ error: PostgresStoreError) { reason.withLock { $0 = error } }
}

/// The first of a connection attempt's result and a cancellation, handed to one waiting continuation.
private final class ConnectOutcome: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<PostgresConnection, any Error>)
        case done(Result<PostgresConnection, any Error>)
        case delivered
    }

    private let state = Mutex(State.idle)

    func wait(_ continuation: CheckedContinuation<PostgresConnection, any Error>) {
        let ready: Result<PostgresConnection, any Error>? = state.withLock { state in
            guard case .done(let result) = state else {
                state = .waiting(continuation)
                return nil
            }
            state = .delivered
            return result
        }
        if let ready { continuation.resume(with: ready) }
    }

    /// False if a result was already given (the caller then owns a connection in `result`).
    func resume(with result: Result<PostgresConnection, any Error>) -> Bool {
        let waiting: CheckedContinuation<PostgresConnection, any Error>?? = state.withLock { state in
            switch state {
            case .idle:
                state = .done(result)
                return .some(nil)
            case .waiting(let continuation):
                state = .delivered
                return .some(continuation)
            case .done, .delivered:
                return nil
            }
        }
        guard let waiting else { return false }
        waiting?.resume(with: result)
        return true
    }
}
