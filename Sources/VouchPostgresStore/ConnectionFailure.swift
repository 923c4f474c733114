import PostgresNIO
import VouchAuthority

/// Tells a database that cannot be reached from one that refused a statement. The first is
/// `AuthorityError(.unavailable)`: a client sees "database unavailable" (gRPC unavailable) and
/// may retry; PostgreSQL's reason goes in the error's cause, for the server's log alone.
enum ConnectionFailure {
    /// An error `body` threw once it had its connection, told apart from the pool's own.
    struct Leased: Error {
        let underlying: any Error
    }

    /// SQLSTATEs of a server going away or refusing connections for now: admin_shutdown,
    /// crash_shutdown, cannot_connect_now (starting or stopping), too_many_connections; and of the
    /// session limits (`PostgresAuthorityStore.sessionLimits`): lock_not_available (the writer
    /// lock held too long elsewhere), query_canceled (statement_timeout),
    /// idle_in_transaction_session_timeout. Class 08 (connection exception) is matched whole.
    static let unavailableStates: Set<String> = ["57P01", "57P02", "57P03", "53300", "55P03", "57014", "25P03"]

    /// Connection-level failures of a connection in use.
    static let unavailableCodes: [PSQLError.Code] = [.connectionError, .serverClosedConnection, .uncleanShutdown,
                                                     .clientClosedConnection]

    static func unavailable(_ cause: String) -> AuthorityError {
        AuthorityError(.unavailable, "database unavailable", cause: cause)
    }

    /// What the store throws for `error`: an `AuthorityError` as it is; a failure to lease a
    /// connection, or a connection-level one, as unavailable; anything else as a `PostgresStoreError`.
    static func classify(_ error: any Error, leased: Bool, location: String) -> any Error {
        if let error = error as? AuthorityError { return error }
        if error is CancellationError || Task.isCancelled { return CancellationError() }
        let described = (error as? PostgresStoreError) ?? PostgresStoreError(location, error)
        // Before the connection was had, whatever failed is the pool's reaching the database
        // (e.g. its circuit breaker, open while every connection attempt fails).
        guard leased, !isConnectionLevel(error) else { return unavailable(described.description) }
        return described
    }

    static func isConnectionLevel(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError else { return error is IOError || error is ChannelError }
        if let state = error.serverInfo?[.sqlState] {
            return state.hasPrefix("08") || unavailableStates.contains(state)
        }
        return unavailableCodes.contains(error.code)
    }
}
