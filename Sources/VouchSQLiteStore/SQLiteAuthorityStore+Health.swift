import Foundation
import GRDB
import VouchAuthority

extension SQLiteAuthorityStore {
    /// A read of the schema table: the file is there and readable.
    public func checkAvailable() async throws {
        do {
            _ = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") }
        } catch {
            throw AuthorityError(.unavailable, "database unavailable", cause: "SQLite database \(pool.path): \(error)")
        }
    }

    /// The database file and its WAL, which holds committed transactions not yet checkpointed into the file.
    public func databaseSize() async throws -> Int {
        [pool.path, pool.path + "-wal"].reduce(0) { total, path in
            total + ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
        }
    }
}
