import Foundation
import Synchronization

/// A database of its own in the test cluster, new and empty; the role `user` may do anything in it.
typealias PostgresTestDatabase = (host: String, port: Int, user: String, database: String)

/// The PostgreSQL 15 cluster of this test process. scripts/test.sh starts one for the whole run and
/// names it in VOUCH_TEST_POSTGRES_URL; without it (`swift test` alone) the first caller starts one
/// with scripts/test-postgres.sh in a temporary folder, stopped when the process exits.
/// A machine without PostgreSQL fails the tests that ask for it, with the reason; none skips.
final class TestPostgres: Sendable {
    static let shared = TestPostgres()

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/test-postgres.sh").path
    static let binaries = ProcessInfo.processInfo.environment["VOUCH_PG_BIN"] ?? "/usr/lib/postgresql/15/bin"

    private struct Cluster {
        let host: String, port: Int, user: String
        let coldStart: Duration?
    }

    /// Set once, by the first caller: the cluster, or why it could not be had (every later caller fails alike).
    private let cluster = Mutex<Result<Cluster, CLIFailure>?>(nil)

    /// How long this process took to start the cluster; nil when scripts/test.sh started it, or not yet started.
    var coldStart: Duration? { cluster.withLock { try? $0?.get().coldStart } }

    /// Creates a new, empty database in the cluster, starting the cluster on first use.
    func freshDatabase() async throws -> PostgresTestDatabase {
        // Starting the cluster and running psql block on child processes: on a thread of their own, so
        // parallel callers take none of the cooperative pool's or Dispatch's few threads (`execute` reads on Dispatch's).
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result {
                    let cluster = try self.startedCluster()
                    let name = "vouch_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
                    try self.psql((cluster.host, cluster.port, cluster.user, "postgres"), "CREATE DATABASE \(name)")
                    return (cluster.host, cluster.port, cluster.user, name)
                })
            }.start()
        }
    }

    static func url(of database: PostgresTestDatabase) -> String {
        "postgres://\(database.user)@\(database.host):\(database.port)/\(database.database)"
    }

    /// Runs SQL in `database` with psql and returns its rows, unaligned, without headers.
    @discardableResult
    func psql(_ database: PostgresTestDatabase, _ sql: String) throws -> String {
        try runPSQL(Self.url(of: database), sql)
    }

    private func startedCluster() throws -> Cluster {
        try cluster.withLock { state in
            if state == nil { state = Result { try Self.startCluster() }.mapError(Self.failure) }
            return try state!.get()
        }
    }

    private static func failure(_ error: Error) -> CLIFailure {
        CLIFailure("no PostgreSQL for the tests: \(error)")
    }

    private static func startCluster() throws -> Cluster {
        if let url = ProcessInfo.processInfo.environment["VOUCH_TEST_POSTGRES_URL"] {
            return try cluster(at: url, coldStart: nil)
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-test-pg-\(UUID().uuidString.prefix(8))").path
        let clock = ContinuousClock(), started = clock.now
        // The pid lets the script stop the cluster should this process die without running its exit handlers.
        let result = try execute(script, ["start", directory, String(getpid())])
        guard result.status == 0 else {
            throw CLIFailure("scripts/test-postgres.sh start \(directory) failed (\(result.status)): \(result.stderr)")
        }
        let cluster = try cluster(at: result.lastLine, coldStart: clock.now - started)
        stopAtExit(directory)
        return cluster
    }

    private static func cluster(at url: String, coldStart: Duration?) throws -> Cluster {
        guard let parts = URLComponents(string: url), let host = parts.host, let port = parts.port, let user = parts.user else {
            throw CLIFailure("not a postgres://USER@HOST:PORT/DATABASE URL: \(url)")
        }
        return Cluster(host: host, port: port, user: user, coldStart: coldStart)
    }

    /// The one folder atexit's handler stops; a C function pointer captures nothing, so it reads it here.
    private static let ownedDirectory = Mutex<String?>(nil)

    private static func stopAtExit(_ directory: String) {
        ownedDirectory.withLock { $0 = directory }
        atexit {
            guard let directory = TestPostgres.ownedDirectory.withLock({ $0 }) else { return }
            spawnAndWait([TestPostgres.script, "stop", directory])
        }
    }
}

/// posix_spawn rather than Foundation's Process: at exit, Foundation's run-loop threads may be gone.
private func spawnAndWait(_ arguments: [String]) {
    var argv = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid = pid_t()
    guard posix_spawn(&pid, arguments[0], nil, nil, &argv, environ) == 0 else { return }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
}
