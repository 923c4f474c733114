import Logging
import PostgresNIO

/// BEGIN … COMMIT on a leased connection. Unlike PostgresNIO's `withTransaction`, an error the body
/// throws reaches the caller as it is (an `AuthorityError` stays one), after the rollback.
enum Transaction {
    enum Mode: String {
        /// READ COMMITTED, the server's default: each statement sees every transaction committed
        /// before it started, so statements after the writer lock see every earlier write.
        case write = "BEGIN"
        /// One snapshot for several reads (rows and the head they end at), never blocking writers.
        case snapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    }

    /// `prepared`: BEGIN and COMMIT as statements prepared on the connection (writes only).
    static func run<T: Sendable>(on connection: PostgresConnection, _ mode: Mode = .write, prepared: Bool = false, logger: Logger,
                                 _ body: (PostgresConnection) async throws -> T) async throws -> T {
        let prepared = prepared && mode == .write
        if prepared {
            try await connection.run(Prepared.Begin(), logger: logger)
        } else {
            try await connection.query(PostgresQuery(unsafeSQL: mode.rawValue), logger: logger)
        }
        let value: T
        do {
            value = try await body(connection)
        } catch {
            do {
                try await connection.query("ROLLBACK", logger: logger)
            } catch {
                // The connection is broken or stuck in the transaction: it must not go back to the pool.
                try? await connection.close()
            }
            throw error
        }
        if prepared {
            try await connection.run(Prepared.Commit(), logger: logger)
        } else {
            try await connection.query("COMMIT", logger: logger)
        }
        return value
    }
}
