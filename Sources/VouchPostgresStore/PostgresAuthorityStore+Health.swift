import PostgresNIO
import VouchAuthority

extension PostgresAuthorityStore {
    /// `SELECT 1` on a pooled connection, waiting for one no longer than a request does.
    public func checkAvailable() async throws {
        _ = try await rows("SELECT 1")
    }

    /// What the database takes on the server's disk (tables, indexes, TOAST, free space in them).
    public func databaseSize() async throws -> Int {
        try await rows("SELECT pg_database_size(current_database())").first?.decode(Int.self) ?? 0
    }
}
