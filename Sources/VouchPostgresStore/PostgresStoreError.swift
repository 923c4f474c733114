import PostgresNIO

/// A database failure, with what PostgreSQL or the connection said. PSQLError's own description
/// hides that, lest it reach a client; Vouch sends clients only "internal error" for a store's
/// error and logs this description.
public struct PostgresStoreError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// The SQLSTATE code the server sent, if the server refused.
    public let sqlState: String?

    init(_ context: String, _ reason: String) {
        (description, sqlState) = ("\(context): \(reason)", nil)
    }

    init(_ context: String, _ error: any Error) {
        guard let error = error as? PSQLError else {
            (description, sqlState) = ("\(context): \(error)", nil)
            return
        }
        sqlState = error.serverInfo?[.sqlState]
        let reason: String
        if let message = error.serverInfo?[.message] {
            reason = message + (sqlState.map { " (SQLSTATE \($0))" } ?? "")
        } else if let underlying = error.underlying {
            reason = "\(error.code): \(underlying)"
        } else {
            reason = "\(error.code)"
        }
        description = "\(context): \(reason)"
    }
}
