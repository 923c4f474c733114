import Foundation
import NIOSSL
import Testing
@testable import VouchPostgresStore

/// `--database` URLs, where the password comes from, and what each sslmode checks: in process,
/// no database needed.
@Suite("Database URL")
struct DatabaseURLTests {
    @Test func aURLNamesHostPortUserDatabaseAndTLS() throws {
        let url = try PostgresURL(parsing: "postgres://vouch@db.internal:6432/ca?sslmode=verify-full&sslrootcert=/etc/vouch/pg.pem")
        #expect(url == PostgresURL(host: "db.internal", port: 6432, user: "vouch", database: "ca",
                                   tls: PostgresTLS(mode: .verifyFull, rootCertificateFile: "/etc/vouch/pg.pem")))
        #expect(url.description == "postgres://vouch@db.internal:6432/ca?sslmode=verify-full&sslrootcert=/etc/vouch/pg.pem")
    }

    /// libpq's defaults: port 5432, the database named as the user, sslmode prefer; postgresql:// too.
    @Test func defaultsAreLibpqs() throws {
        let url = try PostgresURL(parsing: "postgresql://ca%2Dadmin@10.0.0.5")
        #expect(url == PostgresURL(host: "10.0.0.5", port: 5432, user: "ca-admin", database: "ca-admin", tls: PostgresTLS(mode: .prefer)))
        #expect(try PostgresURL(parsing: "postgres://vouch@[::1]:5433/ca").host == "::1")
        #expect(try PostgresURL(parsing: "postgres://vouch@[::1]:5433/ca").description == "postgres://vouch@[::1]:5433/ca?sslmode=prefer")
    }

    /// A password in the URL would show in `ps` and wherever the URL is logged: refused, and the
    /// message points to the safe places without repeating it.
    @Test(arguments: ["postgres://vouch:s3cret-pw@db:5432/ca", "postgresql://vouch:@db/ca", "postgres://vouch:s3cret-pw@db"])
    func aPasswordInTheURLIsRefused(_ text: String) {
        let error = #expect(throws: PostgresURLError.self) { try PostgresURL(parsing: text) }
        #expect(error?.description.contains("must not carry a password") == true)
        #expect(error?.description.contains("--database-password-file") == true)
        #expect(error?.description.contains("PGPASSWORD") == true)
        #expect(error?.description.contains("s3cret-pw") == false)
    }

    @Test(arguments: [
        ("postgres://vouch@db/ca?sslmode=verify-full&connect_timeout=5", "unknown database URL parameter \"connect_timeout\""),
        ("postgres://vouch@db/ca?sslmode=allow", "sslmode \"allow\" is not supported"),
        ("postgres://vouch@db/ca?sslmode=require&sslmode=disable", "given twice"),
        ("postgres://vouch@db/ca?sslmode=disable&sslrootcert=/r.pem", "sslmode=disable turns TLS off"),
        // Against the system's public roots without a host name check, anyone's certificate would do.
        ("postgres://vouch@db/ca?sslmode=verify-ca", "sslmode=verify-ca needs sslrootcert=FILE"),
        // A NUL ends the name in the startup message; what follows would pass as settings.
        ("postgres://vouch@db/ca%00statement_timeout", "holds a control character"),
        ("postgres://vo%0Auch@db/ca", "holds a control character"),
        ("postgres://db/ca", "names no user"),
        ("postgres://vouch@/ca", "names no host"),
        ("mysql://vouch@db/ca", "not a postgres://"),
        ("postgres://vouch@db/ca/more", "one database name"),
        ("postgres://vouch@db:0/ca", "port must be 1-65535"),
    ])
    func whatIsNotUnderstoodIsAClearError(_ text: String, _ message: String) {
        let error = #expect(throws: PostgresURLError.self) { try PostgresURL(parsing: text) }
        #expect(error?.description.contains(message) == true, "\(String(describing: error))")
    }

    /// libpq's semantics: prefer and require check nothing unless given roots (then as verify-ca),
    /// verify-ca the chain only, verify-full the chain and the host name.
    @Test func eachSSLModeChecksWhatLibpqChecks() throws {
        let table: [(PostgresTLS, CertificateVerification, Bool)] = [
            (PostgresTLS(mode: .disable), .none, false),
            (PostgresTLS(mode: .prefer), .none, true),
            (PostgresTLS(mode: .prefer, rootCertificateFile: "r.pem"), .noHostnameVerification, true),
            (PostgresTLS(mode: .require), .none, true),
            (PostgresTLS(mode: .require, rootCertificateFile: "r.pem"), .noHostnameVerification, true),
            (PostgresTLS(mode: .verifyCA), .noHostnameVerification, true),
            (PostgresTLS(mode: .verifyCA, rootCertificateFile: "r.pem"), .noHostnameVerification, true),
            (PostgresTLS(mode: .verifyFull), .fullVerification, true),
            (PostgresTLS(mode: .verifyFull, rootCertificateFile: "r.pem"), .fullVerification, true),
        ]
        for (tls, verification, encrypted) in table {
            #expect(tls.verification == verification, "\(tls)")
            if tls.rootCertificateFile == nil {
                #expect((try tls.clientConfiguration() != nil) == encrypted, "\(tls)")
            }
        }
        // An unreadable root file fails at start, not at the first connection.
        let missing = #expect(throws: PostgresStoreError.self) {
            try PostgresTLS(mode: .verifyFull, rootCertificateFile: "/nonexistent/root.pem").clientConfiguration()
        }
        #expect(missing?.description.contains("sslrootcert /nonexistent/root.pem") == true)
    }

    // MARK: Password sources

    static let url = PostgresURL(host: "db.internal", port: 5432, user: "vouch", database: "ca")

    @Test func aPasswordFileWinsThenPGPASSWORDThenPgpass() throws {
        let folder = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = folder + "/pw", pgpass = folder + "/pgpass"
        try "from-file\nsecond line\n".write(toFile: file, atomically: true, encoding: .utf8)
        try "db.internal:5432:ca:vouch:from-pgpass\n".write(toFile: pgpass, atomically: true, encoding: .utf8)
        chmod(pgpass, 0o600)
        let environment = ["PGPASSWORD": "from-env", "PGPASSFILE": pgpass]
        #expect(try PostgresPassword.find(for: Self.url, passwordFile: file, environment: environment).password == "from-file")
        #expect(try PostgresPassword.find(for: Self.url, passwordFile: nil, environment: environment).password == "from-env")
        let found = try PostgresPassword.find(for: Self.url, passwordFile: nil, environment: ["PGPASSFILE": pgpass])
        #expect(found.password == "from-pgpass" && found.source == pgpass)
        // ~/.pgpass when PGPASSFILE is not set.
        try FileManager.default.copyItem(atPath: pgpass, toPath: folder + "/.pgpass")
        #expect(try PostgresPassword.find(for: Self.url, passwordFile: nil, environment: ["HOME": folder]).password == "from-pgpass")
        #expect(try PostgresPassword.find(for: Self.url, passwordFile: nil, environment: [:]).password == nil)
        // A file named but missing or empty is an error, not a silent fallback to another source.
        #expect(throws: PostgresURLError.self) { try PostgresPassword.find(for: Self.url, passwordFile: folder + "/none", environment: environment) }
        try "\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(throws: PostgresURLError.self) { try PostgresPassword.find(for: Self.url, passwordFile: file, environment: environment) }
    }

    /// A password file or root file that is a FIFO (opening it would block the start), a device
    /// without end, or too large is refused at once, saying why.
    @Test func specialOrHugeFilesAreRefusedNotReadForever() throws {
        let folder = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fifo = folder + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        let huge = folder + "/huge"
        try Data(count: 5000).write(to: URL(fileURLWithPath: huge))
        let url = try PostgresURL(parsing: "postgres://vouch@db/ca")
        for (path, reason) in [(fifo, "is not a regular file"), ("/dev/zero", "is not a regular file"), (huge, "is larger than 4096 bytes")] {
            let error = #expect(throws: PostgresURLError.self) { try PostgresPassword.find(for: url, passwordFile: path) }
            #expect(error?.description.contains(reason) == true, "\(String(describing: error))")
        }
        for path in [fifo, "/dev/zero"] {
            let error = #expect(throws: PostgresStoreError.self) {
                try PostgresTLS(mode: .verifyFull, rootCertificateFile: path).clientConfiguration()
            }
            #expect(error?.description.contains("is not a regular file") == true, "\(String(describing: error))")
        }
    }

    /// As libpq: a password file group or others may read is ignored, with a warning.
    @Test func aPgpassOthersMayReadIsIgnoredWithAWarning() throws {
        let folder = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let pgpass = folder + "/pgpass"
        try "*:*:*:*:exposed\n".write(toFile: pgpass, atomically: true, encoding: .utf8)
        for mode: mode_t in [0o640, 0o604, 0o644] {
            chmod(pgpass, mode)
            let found = try PostgresPassword.find(for: Self.url, passwordFile: nil, environment: ["PGPASSFILE": pgpass])
            #expect(found.password == nil)
            #expect(found.warnings == ["password file \(pgpass) has group or world access; ignored (permissions should be u=rw (0600) or less)"])
        }
        chmod(pgpass, 0o400)
        #expect(try PostgresPassword.find(for: Self.url, passwordFile: nil, environment: ["PGPASSFILE": pgpass]).password == "exposed")
    }

    @Test func pgpassLinesMatchAsLibpqMatchesThem() {
        let text = #"""
            # comment:line:that:looks:like-one
            other.host:5432:ca:vouch:wrong-host
            db.internal:6432:ca:vouch:wrong-port
            db.internal:5432:*:admin:wrong-user
            db.internal:5432:c\:a:vouch:escaped-database
            *:5432:ca:vouch:pa\:ss\\word:ignored-after-colon
            *:*:*:*:fallback
            """#
        #expect(PGPassFile.lookup(in: text, host: "db.internal", port: 5432, database: "ca", user: "vouch") == #"pa:ss\word"#)
        #expect(PGPassFile.lookup(in: text, host: "db.internal", port: 5432, database: "c:a", user: "vouch") == "escaped-database")
        #expect(PGPassFile.lookup(in: text, host: "db.internal", port: 6432, database: "ca", user: "vouch") == "wrong-port")
        #expect(PGPassFile.lookup(in: text, host: "elsewhere", port: 1, database: "x", user: "y") == "fallback")
        // An escaped star is a literal star, not a wildcard; lines with too few fields are skipped.
        #expect(PGPassFile.lookup(in: #"\*:*:*:*:literal"# + "\nshort:line\n", host: "db", port: 1, database: "x", user: "y") == nil)
        #expect(PGPassFile.lookup(in: #"\*:*:*:*:literal"#, host: "*", port: 1, database: "x", user: "y") == "literal")
    }
}
