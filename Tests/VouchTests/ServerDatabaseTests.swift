import Foundation
import GRPCCore
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchPostgresStore
import XCTest

/// `vouch server --database postgres://…`: the real binary on a real PostgreSQL 15. The CA's
/// records land in PostgreSQL, the password shows nowhere, each sslmode checks what libpq's does,
/// and a database outage is `unavailable` within the connection wait, then over without a restart.
final class ServerDatabaseTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    /// Enroll, renew and revoke through a server on PostgreSQL: the rows are in the database (not in
    /// DIR/vouch.db), `ca init --database` recorded the CA's own certificates there, `audit verify
    /// --database` passes, /healthz reads it and /metrics reports its size.
    func testServerOnPostgresKeepsItsRecordsThere() async throws {
        let base = try CAFixture()
        base.server.stop()
        // ca init --database records the CA's own certificates in PostgreSQL; a second CA may not share the database.
        let initDatabase = try await TestPostgres.shared.freshDatabase()
        let initialized = try vouch("ca", "init", "--dir", base.root + "/other", "--trust-domain", "example.org",
                                    "--database", TestPostgres.url(of: initDatabase))
        XCTAssertEqual(initialized.status, 0, initialized.stderr)
        XCTAssertEqual(try TestPostgres.shared.psql(initDatabase, "SELECT count(*) FROM certificate"), "2", "server and admin certificates")
        XCTAssertFalse(FileManager.default.fileExists(atPath: base.root + "/other/vouch.db"))
        let again = try vouch("ca", "init", "--dir", base.root + "/third", "--trust-domain", "example.org",
                              "--database", TestPostgres.url(of: initDatabase))
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("the database already holds certificates"), again.stderr)

        let database = try await TestPostgres.shared.freshDatabase()
        let url = TestPostgres.url(of: database)
        let caDir = base.caDir
        try FileManager.default.removeItem(atPath: caDir + "/vouch.db")
        // From the config file's server section.
        try "server:\n  database: \(url)\n".write(toFile: base.root + "/vouch.yaml", atomically: true, encoding: .utf8)
        let server = try ServerProcess(directory: caDir, extraArguments: ["--config", base.root + "/vouch.yaml", "--http", "127.0.0.1:0"])
        let ca = try CAFixture(reusing: base, server: server)
        XCTAssertTrue(server.log.contains("database=\(url)?sslmode=prefer"), server.log)
        let adminCert = try vouch("ca", "admin-cert", "--dir", caDir, "--spiffe-id", "spiffe://example.org/admin/ops",
                                  "--out", base.root + "/ops", "--database", url)
        XCTAssertEqual(adminCert.status, 0, adminCert.stderr)
        let token = try ca.createToken(spiffeID: Self.web)
        let key = try PrivateKey(generating: .p256)
        let enrolled = try await ca.enroll(token: token, key: key)
        let renewed = try await ca.renew(with: try ca.writeIdentity(enrolled, key: key, name: "web"), newKey: try PrivateKey(generating: .p256))
        _ = try await ca.revoke(renewed.serial, as: ca.admin)

        XCTAssertFalse(FileManager.default.fileExists(atPath: caDir + "/vouch.db"), "no SQLite database beside PostgreSQL")
        XCTAssertEqual(try TestPostgres.shared.psql(database, "SELECT count(*) FROM certificate WHERE spiffe_id <> 'spiffe://example.org/vouch/server'"),
                       "3", "enrolled, renewed, admin-cert")
        XCTAssertEqual(try TestPostgres.shared.psql(database, "SELECT count(*) FROM certificate WHERE spiffe_id = 'spiffe://example.org/vouch/server'"),
                       "1", "the listener certificate the server issued itself")
        XCTAssertEqual(try TestPostgres.shared.psql(database, "SELECT superseded_by FROM certificate WHERE serial = '\(enrolled.serial)'"),
                       renewed.serial)
        XCTAssertEqual(try TestPostgres.shared.psql(database, "SELECT serial FROM revocation"), renewed.serial)
        XCTAssertEqual(try TestPostgres.shared.psql(database, "SELECT uses_consumed FROM token"), "1")
        let verified = try vouch("audit", "verify", "--dir", caDir, "--database", url)
        XCTAssertEqual(verified.status, 0, verified.stderr)
        XCTAssertTrue(verified.stdout.hasPrefix("audit log intact: "), verified.stdout)

        let http = try httpAddress(of: server)
        XCTAssertEqual(try Self.get(http, "/healthz"), "ok 200")
        let size = try execute("/usr/bin/curl", ["-sf", "http://\(http)/metrics"]).stdout.split(separator: "\n")
            .first { $0.hasPrefix("vouch_ca_database_bytes ") }.flatMap { Double($0.split(separator: " ")[1]) }
        let expected = Double(try TestPostgres.shared.psql(database, "SELECT pg_database_size(current_database())")) ?? 0
        XCTAssertEqual(size ?? 0, expected, accuracy: expected * 0.1 + 1, "pg_database_size, not a file's size")
        XCTAssertGreaterThan(size ?? 0, 1_000_000)
    }

    /// The password is given only by file (or PGPASSWORD, ~/.pgpass): a URL with one is refused; a
    /// wrong one fails the start naming user, host and database; the server's whole output, at
    /// trace level, never holds it.
    func testTheDatabasePasswordShowsNowhere() async throws {
        let cluster = try OwnPostgresCluster(secured: true)
        let password = "pw-\(UUID().uuidString)", wrong = "wrong-\(UUID().uuidString)"
        try cluster.psql("CREATE ROLE ca_app LOGIN PASSWORD '\(password)'")
        try cluster.psql("CREATE DATABASE ca_db OWNER ca_app")
        let url = "postgres://ca_app@127.0.0.1:\(cluster.port)/ca_db?sslmode=require"
        let ca = try CAFixture()
        ca.server.stop()
        try password.write(toFile: ca.root + "/db-password", atomically: true, encoding: .utf8)
        try (wrong + "\n").write(toFile: ca.root + "/wrong-password", atomically: true, encoding: .utf8)

        let inURL = try vouch("server", "--dir", ca.caDir, "--database", "postgres://ca_app:\(password)@127.0.0.1:\(cluster.port)/ca_db")
        XCTAssertEqual(inURL.status, 1)
        XCTAssertTrue(inURL.stderr.contains("must not carry a password"), inURL.stderr)
        XCTAssertFalse((inURL.stdout + inURL.stderr).contains(password))

        let refused = try vouch("server", "--dir", ca.caDir, "--log-level", "trace", "--database", url,
                                "--database-password-file", ca.root + "/wrong-password")
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("PostgreSQL database ca_db at 127.0.0.1:\(cluster.port) as ca_app"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("password authentication failed for user \"ca_app\""), refused.stderr)
        XCTAssertFalse((refused.stdout + refused.stderr).contains(wrong))
        XCTAssertFalse((refused.stdout + refused.stderr).contains(password))

        // The flags win over the config file's keys.
        try "server:\n  database: postgres://nobody@127.0.0.1:1/none\n  database_password_file: \(ca.root)/wrong-password\n"
            .write(toFile: ca.root + "/vouch.yaml", atomically: true, encoding: .utf8)
        let server = try ServerProcess(directory: ca.caDir, extraArguments: [
            "--config", ca.root + "/vouch.yaml", "--log-level", "trace", "--http", "127.0.0.1:0",
            "--database", url, "--database-password-file", ca.root + "/db-password"])
        let running = try CAFixture(reusing: ca, server: server)
        let key = try PrivateKey(generating: .p256)
        _ = try await running.enroll(token: try running.createToken(spiffeID: Self.web), key: key)
        XCTAssertEqual(try Self.get(try httpAddress(of: server), "/healthz"), "ok 200")
        XCTAssertTrue(server.log.contains("password=from password file \(ca.root)/db-password"), server.log)
        let help = try vouch("server", "--help")
        server.stop()
        XCTAssertGreaterThan(server.log.count, 10_000, "trace logging of the connections")
        XCTAssertFalse(server.log.contains(password), "the password in the server's output")
        XCTAssertTrue(help.stdout.contains("--database-password-file"), help.stdout)
    }

    /// Each sslmode against a server with TLS on, whose certificate names localhost only, and which
    /// takes the role only over TLS: what connects and what fails, with what reason.
    func testEachSSLModeConnectsOrFailsAsLibpq() async throws {
        let cluster = try OwnPostgresCluster(secured: true)
        try cluster.psql("CREATE ROLE ca_tls LOGIN PASSWORD 'tls-pw' SUPERUSER")
        func connect(_ host: String, _ tls: PostgresTLS) async throws {
            let store = try await PostgresAuthorityStore.connect(host: host, port: cluster.port, user: "ca_tls", password: "tls-pw",
                                                                 database: "postgres", tls: tls)
            try await store.checkAvailable()
            await store.close()
        }
        func failure(_ host: String, _ tls: PostgresTLS) async -> String {
            do {
                try await connect(host, tls)
                return "connected"
            } catch {
                return "\(error)"
            }
        }
        let root = cluster.directory + "-certs/root.pem", stranger = cluster.directory + "-certs/stranger.pem"
        try await connect("localhost", PostgresTLS(mode: .verifyFull, rootCertificateFile: root))
        try await connect("127.0.0.1", PostgresTLS(mode: .verifyCA, rootCertificateFile: root))
        try await connect("127.0.0.1", PostgresTLS(mode: .require))  // encrypted, nothing checked
        try await connect("127.0.0.1", PostgresTLS(mode: .prefer))   // the server offers TLS: taken
        let wrongName = await failure("127.0.0.1", PostgresTLS(mode: .verifyFull, rootCertificateFile: root))
        XCTAssertTrue(wrongName.contains("the server's certificate is not valid for 127.0.0.1"), wrongName)
        let untrusted = await failure("127.0.0.1", PostgresTLS(mode: .verifyCA, rootCertificateFile: stranger))
        XCTAssertTrue(untrusted.contains("not signed by a trusted root (\(stranger))"), untrusted)
        let systemRoots = await failure("localhost", PostgresTLS(mode: .verifyFull))
        XCTAssertTrue(systemRoots.contains("not signed by a trusted root (the system's roots)"), systemRoots)
        let rootedRequire = await failure("127.0.0.1", PostgresTLS(mode: .require, rootCertificateFile: stranger))
        XCTAssertTrue(rootedRequire.contains("not signed by a trusted root"), "require with a root file checks the chain: \(rootedRequire)")
        let plain = await failure("127.0.0.1", .disable)
        XCTAssertTrue(plain.contains("no pg_hba.conf entry") && plain.contains("no encryption"), plain)

        // The server refuses to start on a certificate that does not name the host, saying so.
        let ca = try CAFixture()
        ca.server.stop()
        try "tls-pw".write(toFile: ca.root + "/pw", atomically: true, encoding: .utf8)
        let start = try vouch("server", "--dir", ca.caDir, "--database-password-file", ca.root + "/pw", "--database",
                              "postgresql://ca_tls@127.0.0.1:\(cluster.port)/postgres?sslmode=verify-full&sslrootcert=\(root)")
        XCTAssertEqual(start.status, 1)
        XCTAssertTrue(start.stderr.contains("cannot open the database: PostgreSQL database postgres at 127.0.0.1:\(cluster.port) as ca_tls "
            + "(sslmode=verify-full sslrootcert=\(root))"), start.stderr)
        XCTAssertTrue(start.stderr.contains("the server's certificate is not valid for 127.0.0.1"), start.stderr)
    }

    /// PostgreSQL stops: a request is answered `unavailable` "database unavailable" within the
    /// connection wait (4 s), the cause logged once, /healthz 503 naming the database; the server
    /// keeps running, and once PostgreSQL is back the same server issues again.
    /// A database whose certificate is not checked, on another host, is named as a risk at start;
    /// a config file's password file never goes to a database the command line names instead.
    func testAnUncheckedDatabaseCertificateIsWarnedOfAndPasswordsStayWithTheirURL() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        XCTAssertEqual(try vouch("ca", "init", "--dir", directory + "/ca", "--trust-domain", "example.org").status, 0)
        func verify(_ url: String) throws -> CommandResult {
            try execute(VouchBinary.path, ["audit", "verify", "--dir", directory + "/ca", "--database", url])
        }
        for mode in ["disable", "prefer", "require"] {
            let result = try verify("postgres://vouch@db.invalid/ca?sslmode=\(mode)")
            XCTAssertNotEqual(result.status, 0)
            XCTAssertTrue(result.stderr.contains("the database's certificate is not checked (sslmode=\(mode))"), result.stderr)
        }
        // prefer falls back to plain text for whoever answers "no TLS": a root file does not change that.
        XCTAssertTrue(try verify("postgres://vouch@db.invalid/ca?sslmode=prefer&sslrootcert=/etc/hostname").stderr.contains("is not checked"))
        // A name that merely starts like a loopback address is a name on the network.
        XCTAssertTrue(try verify("postgres://vouch@127.db.invalid/ca?sslmode=prefer").stderr.contains("is not checked"))
        for url in ["postgres://vouch@db.invalid/ca?sslmode=verify-full", "postgres://vouch@127.0.0.1:1/ca?sslmode=disable",
                    "postgres://vouch@[::1]:1/ca?sslmode=disable"] {
            XCTAssertFalse(try verify(url).stderr.contains("is not checked"), url)
        }
        let refused = try verify("postgres://vouch@db.invalid/ca?sslmode=verify-ca")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("sslmode=verify-ca needs sslrootcert=FILE"), refused.stderr)

        // The config file's password file goes with the config file's URL only.
        try "secret\n".write(toFile: directory + "/password", atomically: true, encoding: .utf8)
        try "server:\n  database: postgres://vouch@db.invalid/prod?sslmode=verify-full\n  database_password_file: \(directory)/password\n"
            .write(toFile: directory + "/vouch.yaml", atomically: true, encoding: .utf8)
        func storeLine(_ extra: [String]) throws -> String {
            let result = try execute(VouchBinary.path, ["server", "--dir", directory + "/ca", "--config", directory + "/vouch.yaml",
                                                        "--listen", "127.0.0.1:0"] + extra)
            return (result.stdout + result.stderr).split(separator: "\n").first { $0.contains("] store") }.map(String.init) ?? ""
        }
        XCTAssertTrue(try storeLine([]).contains("password=from password file"), "the config file's pair")
        let other = try storeLine(["--database", "postgres://vouch@db.invalid/staging?sslmode=verify-full"])
        XCTAssertTrue(other.contains("db.invalid:5432/staging") && other.contains("password=none"), other)
    }

    func testADatabaseOutageIsUnavailableThenOverWithoutRestart() async throws {
        let cluster = try OwnPostgresCluster(secured: false)
        try cluster.psql("CREATE DATABASE ca_db")
        let url = "postgres://vouch@127.0.0.1:\(cluster.port)/ca_db?sslmode=disable"
        let base = try CAFixture()
        base.server.stop()
        let server = try ServerProcess(directory: base.caDir, extraArguments: ["--database", url, "--http", "127.0.0.1:0"])
        let ca = try CAFixture(reusing: base, server: server)
        let http = try httpAddress(of: server)
        let tokens = try (0..<2).map { _ in try ca.createToken(spiffeID: Self.web) }

        try cluster.pause()
        let clock = ContinuousClock(), started = clock.now
        // /healthz waits as long as the request does: asked meanwhile.
        async let healthDuringOutage = Self.fetch(http, "/healthz")
        do {
            _ = try await ca.enroll(token: tokens[0], key: try PrivateKey(generating: .p256))
            XCTFail("enrolled while the database is down")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unavailable, "\(error)")
            XCTAssertEqual(error.message, "database unavailable", "no detail for the client")
        }
        XCTAssertLessThan(clock.now - started, .seconds(7), "answered within the 4 s connection wait (and a busy machine's slack)")
        let health = try await healthDuringOutage
        XCTAssertTrue(health.hasPrefix("unhealthy: database unavailable: PostgreSQL database ca_db at 127.0.0.1:\(cluster.port) as vouch"), health)
        XCTAssertTrue(health.hasSuffix(" 503"), health)
        XCTAssertTrue(eventually { server.log.contains("code=unavailable") }, server.log)
        let causes = server.log.split(separator: "\n").filter { $0.contains("cause=PostgreSQL database ca_db at 127.0.0.1:\(cluster.port) as vouch") }
        XCTAssertEqual(causes.count, 1, "the cause logged once, by the interceptor: \(server.log)")
        XCTAssertTrue(server.process.isRunning)

        try cluster.resume()
        // The pool reconnects on its own (its backoff after a few seconds' outage is about a second).
        var issued: Vouch_V1_CertificateResponse?
        let deadline = clock.now + .seconds(20)
        while issued == nil, clock.now < deadline {
            issued = try? await ca.enroll(token: tokens[0], key: try PrivateKey(generating: .p256))
            if issued == nil { try await Task.sleep(for: .milliseconds(200)) }
        }
        XCTAssertNotNil(issued, "the same server issues again once PostgreSQL is back: \(server.log)")
        _ = try await ca.enroll(token: tokens[1], key: try PrivateKey(generating: .p256))
        XCTAssertEqual(try Self.get(http, "/healthz"), "ok 200")
        XCTAssertEqual(try cluster.psql("SELECT count(*) FROM certificate WHERE spiffe_id <> 'spiffe://example.org/vouch/server'", database: "ca_db"), "2")
    }

    // MARK: Helpers

    func httpAddress(of server: ServerProcess) throws -> String {
        XCTAssertTrue(eventually { server.log.contains("vouch server http on ") }, server.log)
        return server.httpAddress ?? ""
    }

    /// `get` on a thread of its own, so the wait blocks none of the cooperative pool's few threads.
    static func fetch(_ address: String, _ path: String) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try Self.get(address, path) }) }.start()
        }
    }

    /// The body, without its line break, and the status code, e.g. "ok 200".
    static func get(_ address: String, _ path: String) throws -> String {
        let output = try execute("/usr/bin/curl", ["-s", "-m", "20", "-w", "\n%{http_code}", "http://\(address)\(path)"]).stdout
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        return lines.dropLast().joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines) + " " + (lines.last ?? "")
    }
}

/// A PostgreSQL cluster of the test's own (scripts/test-postgres.sh in a temporary folder), for
/// what the shared one must not undergo: an outage, TLS and password authentication. Stopped and
/// removed when released.
final class OwnPostgresCluster {
    let directory: String
    let port: Int

    /// - Parameter secured: TLS on with a certificate for DNS:localhost only, signed by the root in
    ///   DIRECTORY-certs/root.pem (DIRECTORY-certs/stranger.pem is an unrelated root); over TCP, roles
    ///   other than vouch must use TLS and a password.
    init(secured: Bool) throws {
        directory = try temporaryDirectory() + "/pg"
        let started = try execute(TestPostgres.script, ["start", directory, String(getpid())])
        guard started.status == 0, let port = URLComponents(string: started.lastLine)?.port else {
            throw CLIFailure("test-postgres.sh start failed: \(started.stderr)")
        }
        self.port = port
        guard secured else { return }
        let certs = directory + "-certs"
        try FileManager.default.createDirectory(atPath: certs, withIntermediateDirectories: true)
        for name in ["root", "stranger"] {
            try check(openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                               "-keyout", "\(certs)/\(name).key", "-out", "\(certs)/\(name).pem", "-subj", "/CN=test \(name)"]))
        }
        try "subjectAltName=DNS:localhost\n".write(toFile: certs + "/ext", atomically: true, encoding: .utf8)
        try check(openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                           "-keyout", certs + "/server.key", "-out", certs + "/server.csr", "-subj", "/CN=localhost"]))
        try check(openssl(["x509", "-req", "-in", certs + "/server.csr", "-CA", certs + "/root.pem", "-CAkey", certs + "/root.key",
                           "-CAcreateserial", "-days", "2", "-extfile", certs + "/ext", "-out", certs + "/server.pem"]))
        try check(execute(TestPostgres.script, ["secure", directory, certs + "/server.pem", certs + "/server.key"]))
    }

    private func check(_ result: CommandResult) throws {
        guard result.status == 0 else { throw CLIFailure("cluster setup failed: \(result.stderr)") }
    }

    /// Runs SQL as the superuser vouch.
    @discardableResult
    func psql(_ sql: String, database: String = "postgres") throws -> String {
        try TestPostgres.shared.psql(("127.0.0.1", port, "vouch", database), sql)
    }

    func pause() throws { try check(execute(TestPostgres.script, ["pause", directory])) }
    func resume() throws { try check(execute(TestPostgres.script, ["resume", directory])) }

    deinit {
        _ = try? execute(TestPostgres.script, ["stop", directory])
        try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: directory).deletingLastPathComponent().path)
    }
}
