import XCTest

/// The test cluster hands each caller a database of its own: new, empty and writable.
final class TestPostgresTests: XCTestCase {
    let postgres = TestPostgres.shared

    func testFreshDatabasesAreDistinctEmptyAndWritable() async throws {
        let first = try await postgres.freshDatabase(), second = try await postgres.freshDatabase()
        print("TestPostgres: " + (postgres.coldStart.map { "a cold start of the cluster took \($0)" } ?? "the cluster of scripts/test.sh"))
        XCTAssertNotEqual(first.database, second.database)
        for database in [first, second] {
            XCTAssertEqual(try postgres.psql(database, "SELECT current_database()"), database.database)
            XCTAssertEqual(try postgres.psql(database, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"), "0")
        }

        try postgres.psql(first, "CREATE TABLE certificates (serial text PRIMARY KEY); INSERT INTO certificates VALUES ('01')")
        XCTAssertEqual(try postgres.psql(first, "SELECT serial FROM certificates"), "01")
        XCTAssertEqual(try postgres.psql(second, "SELECT count(*) FROM pg_tables WHERE tablename = 'certificates'"), "0")
    }

    /// Parallel tests ask at once, maybe before the cluster is up: one cluster, a database each.
    func testCallersAtOnceGetADatabaseEach() async throws {
        let postgres = postgres
        let names = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 { group.addTask { try await postgres.freshDatabase().database } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        XCTAssertEqual(names.count, 8)
    }
}
