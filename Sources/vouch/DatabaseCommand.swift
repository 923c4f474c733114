import ArgumentParser
import Foundation
import VouchAuthority
import VouchCrypto
import VouchPostgresStore
import VouchSQLiteStore

struct DatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Manage the CA's database.", subcommands: [DatabaseMigrate.self])
}

struct DatabaseMigrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy a CA's SQLite database into an empty PostgreSQL database.",
        discussion: """
            Stop `vouch server` first: the command refuses while another process has DIR/vouch.db open, and \
            what a server writes after the copy would be lost. It reads the SQLite file in one read transaction \
            and checks its audit log (chain, head, signed checkpoints) before copying. Then, in one PostgreSQL \
            transaction, it copies every certificate, token (hashes only, with their uses), revocation (with its \
            sequence number), audit row (with its id and chain hashes), the audit head, the audit checkpoints, the \
            CRL number, the issuers (with their generation and keys) and the trust bundle confirmations, and moves the database's counters past the copied ids; the copy is read back before it \
            commits. A database holding any certificate, token, revocation or audit row is refused and left as it \
            was. Afterwards the audit log is verified again on the copy, signatures included. Nothing is removed from \
            the SQLite file: keep it until the CA runs on PostgreSQL.
            """)

    @Option(help: "CA directory made by `vouch ca init` (reads DIR/vouch.db and DIR/intermediate.pem).")
    var dir: String = "./vouch-ca"

    @Option(help: ArgumentHelp(
        "The empty PostgreSQL database to copy into, postgres://USER@HOST[:PORT]/DB[?sslmode=MODE&sslrootcert=FILE], as for `vouch server --database`.",
        valueName: "url"))
    var to: String

    @Option(help: ArgumentHelp(
        "File whose first line is the PostgreSQL password (else PGPASSWORD, else PGPASSFILE or ~/.pgpass).", valueName: "file"))
    var databasePasswordFile: String?

    @Flag(help: "Print the summary as JSON.")
    var json = false

    struct Summary: Encodable {
        let source: String
        let target: String
        let certificates, tokens, revocations, auditEvents, auditCheckpoints, issuers, trustConfirmations, agentReports: Int
        let issuerGeneration: Int64
        let lastRevocationSequence: Int64
        let auditHeadRow: Int64
        let auditHeadHash: String
        let crlNumber: Int64
        let verified: Bool
        let seconds: Double
    }

    func run() async throws {
        try await runReportingErrors {
            let clock = ContinuousClock(), started = clock.now
            let files = CAFiles(directory: dir)
            guard FileManager.default.fileExists(atPath: files.database) else { throw CLIError("no database at \(files.database)") }
            guard let intermediatePEM = try? String(contentsOfFile: files.intermediateCertificate, encoding: .utf8) else {
                throw CLIError("cannot read \(files.intermediateCertificate): the audit checkpoints are verified with the intermediate certificate")
            }
            let intermediate = try X509Certificate(pem: intermediatePEM)
            // The target as `vouch server --database` takes it: URL, sslmode, password lookup.
            let target: PostgresURL
            do {
                target = try PostgresURL(parsing: to)
            } catch let error as PostgresURLError {
                throw CLIError("--to: \(error)")
            }
            let database = try DatabaseOptions.parse(["--database", to] + (databasePasswordFile.map { ["--database-password-file", $0] } ?? []))

            let snapshot = try await readSource(files, intermediate: intermediate)
            guard let store = try await database.open(files: files, logger: DatabaseOptions.commandLogger) as? PostgresAuthorityStore else {
                throw CLIError("--to must name a PostgreSQL database")
            }
            let counts: AuthorityStoreSnapshot.Counts, head: [UInt8]
            do {
                (counts, head) = try await copy(snapshot, into: store, intermediate: intermediate, target: target)
                await store.close()
            } catch {
                await store.close()
                throw error
            }
            try report(Summary(
                source: files.database, target: target.description, certificates: counts.certificates, tokens: counts.tokens,
                revocations: counts.revocations, auditEvents: counts.auditEvents, auditCheckpoints: counts.auditCheckpoints,
                issuers: counts.issuers, trustConfirmations: counts.trustConfirmations, agentReports: counts.agentReports,
                issuerGeneration: snapshot.issuerGeneration,
                lastRevocationSequence: snapshot.revocations.last?.sequence ?? 0, auditHeadRow: snapshot.auditHead?.id ?? 0,
                auditHeadHash: head.hex, crlNumber: snapshot.crlNumber, verified: true,
                seconds: ((clock.now - started) / .milliseconds(1)).rounded() / 1000))
        }
    }

    /// The SQLite database's state, once no other process has it open and its audit log verifies.
    private func readSource(_ files: CAFiles, intermediate: X509Certificate) async throws -> AuthorityStoreSnapshot {
        if let pid = SQLiteAuthorityStore.processHoldingOpen(path: files.database) {
            throw CLIError("process \(pid) has \(files.database) open (a running vouch server?): stop it first; nothing was copied")
        }
        let snapshot = try await SQLiteAuthorityStore(path: files.database).exportAll()
        let head = snapshot.auditHead.map { (id: $0.id, hash: $0.hash) }
        if case .broken(let rowID, let reason) = AuditChain.verify(snapshot.auditEvents, head: head, checkpoints: snapshot.auditCheckpoints.map(\.checkpoint),
                                                                   intermediate: intermediate) {
            throw CLIError("the audit log of \(files.database) is broken at row \(rowID): \(reason); nothing was copied "
                           + "(`vouch audit verify` tells the same)")
        }
        return snapshot
    }

    /// Copies `snapshot` into `store`, then verifies the committed copy's audit log as
    /// `vouch audit verify` does; returns the counts and the copy's audit head.
    private func copy(_ snapshot: AuthorityStoreSnapshot, into store: PostgresAuthorityStore, intermediate: X509Certificate,
                      target: PostgresURL) async throws -> (AuthorityStoreSnapshot.Counts, [UInt8]) {
        let counts = try await store.importAll(snapshot)
        let chain = try await store.auditChain()
        let verdict = AuditChain.verify(chain.rows, head: chain.head, checkpoints: try await store.auditCheckpoints(), intermediate: intermediate)
        guard case .intact(let events, let head, let checked) = verdict, events == counts.auditEvents,
              head == (snapshot.auditHead?.hash ?? AuditChain.genesis), checked == counts.auditCheckpoints else {
            throw CLIError("the copy in \(target) was committed but its audit log does not verify (\(verdict)); drop that database before trying again")
        }
        return (counts, head)
    }

    private func report(_ summary: Summary) throws {
        if json { return try printJSON(summary) }
        print("copied \(summary.source) to \(summary.target) in \(summary.seconds) s")
        printTable(["TABLE", "ROWS", "NOTE"], [
            ["certificate", "\(summary.certificates)", ""],
            ["token", "\(summary.tokens)", ""],
            ["revocation", "\(summary.revocations)", "last sequence \(summary.lastRevocationSequence)"],
            ["audit_event", "\(summary.auditEvents)", "head at row \(summary.auditHeadRow)"],
            ["audit_checkpoint", "\(summary.auditCheckpoints)", ""],
            ["crl_state", "1", "CRL number \(summary.crlNumber)"],
            ["issuer", "\(summary.issuers)", "generation \(summary.issuerGeneration)"],
            ["trust_confirmation", "\(summary.trustConfirmations)", ""],
            ["agent_report", "\(summary.agentReports)", ""],
        ])
        print("audit log verified on the copy: \(summary.auditEvents) events, head \(summary.auditHeadHash), "
              + "\(summary.auditCheckpoints) signed checkpoints match")
    }
}
