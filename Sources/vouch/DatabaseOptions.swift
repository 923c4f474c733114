import ArgumentParser
import Foundation
import Logging
import VouchAuthority
import VouchIdentityRules
import VouchPostgresStore
import VouchSQLiteStore

/// Where the CA's state lives: SQLite in the CA directory, or with `--database` a PostgreSQL
/// database that several CA replicas may share. Shared by every command that opens the store
/// itself (`server`, `ca init`, `ca admin-cert`, `audit verify`); the others ask the server.
struct DatabaseOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "PostgreSQL database, postgres://USER@HOST[:PORT]/DB[?sslmode=MODE&sslrootcert=FILE] (default: SQLite in the CA directory).",
        discussion: "sslmode: disable, prefer (default), require, verify-ca, verify-full. Never put the password in the URL.",
        valueName: "url"))
    var database: String?

    @Option(help: ArgumentHelp(
        "File whose first line is the PostgreSQL password (else PGPASSWORD, else PGPASSFILE or ~/.pgpass).", valueName: "file"))
    var databasePasswordFile: String?

    /// How long a request waits for a pooled PostgreSQL connection before it is answered
    /// `unavailable`: well inside the 10 s deadline agents give a call, and long enough for a
    /// busy pool to hand one over.
    static let connectionWait: Duration = .seconds(4)

    /// A loopback address or name, or a unix socket folder: no network path to be on. A name like
    /// `127.db.example.org` is a name, not an address.
    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host.hasPrefix("/") { return true }
        guard let bytes = IPAddress.parse(host) else { return false }
        return bytes.count == 4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// For commands that run once: only warnings (e.g. a ~/.pgpass others may read), on stderr.
    static var commandLogger: Logger {
        var logger = Logger(label: "vouch.database")
        logger.logLevel = .warning
        return logger
    }

    /// The store named by the flags, else by the config file's keys (`database`, `database_password_file`),
    /// else SQLite in `files`' directory. Logs which one, never the password.
    /// - Parameter serving: for `vouch server`: refuses a SQLite database another process has open.
    func open(files: CAFiles, configDatabase: String? = nil, configPasswordFile: String? = nil, serving: Bool = false,
              logger: Logger) async throws -> any AuthorityStore {
        // The password file comes from where the URL does: a config file's password must not
        // travel to a database the command line names instead.
        let passwordFile = database != nil ? databasePasswordFile : (databasePasswordFile ?? configPasswordFile)
        guard let text = database ?? configDatabase else {
            if passwordFile != nil { throw CLIError("a database password file is given but no --database (database:) URL") }
            // Two servers on one SQLite file would each miss the other's revocations (SQLite
            // announces nothing); replicas need PostgreSQL.
            if serving, let pid = SQLiteAuthorityStore.processHoldingOpen(path: files.database) {
                throw CLIError("process \(pid) has \(files.database) open (another vouch server?): two servers on one SQLite "
                    + "database would not see each other's revocations; run replicas on PostgreSQL with --database")
            }
            logger.info("store", metadata: ["database": "sqlite:\(files.database)"])
            return try SQLiteAuthorityStore(path: files.database)
        }
        let url: PostgresURL
        do {
            url = try PostgresURL(parsing: text)
        } catch let error as PostgresURLError {
            throw CLIError("--database: \(error)")
        }
        let found: PostgresPassword.Found
        do {
            found = try PostgresPassword.find(for: url, passwordFile: passwordFile)
        } catch let error as PostgresURLError {
            throw CLIError("\(error)")
        }
        for warning in found.warnings { logger.warning("\(warning)") }
        if !url.tls.authenticatesServer, !Self.isLoopback(url.host) {
            logger.warning("""
                the database's certificate is not checked (\(url.tls)): anyone on the network path can pose as it, \
                read the password and change the CA's state; use sslmode=verify-full (with sslrootcert=FILE for a private CA)
                """)
        }
        logger.info("store", metadata: ["database": "\(url)", "password": "\(found.password == nil ? "none" : "from \(found.source)")"])
        do {
            return try await PostgresAuthorityStore.connect(url, password: found.password, connectionWait: Self.connectionWait,
                                                            logger: Logger(label: "vouch.postgres"))
        } catch let error as PostgresStoreError {
            throw CLIError("cannot open the database: \(error)")
        }
    }
}
