import ArgumentParser
import Foundation
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchFiles
import VouchSQLiteStore

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Read the audit log.", subcommands: [AuditList.self, AuditVerify.self, AuditCheckpointCommand.self])
}

struct AuditList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List audit events, oldest first.")

    @OptionGroup var connection: AdminConnectionOptions

    @Option(help: "Only events after this id.")
    var after: Int64 = 0

    @Option(help: "Maximum events.")
    var limit: Int32 = 100

    @Flag(help: "Print the result as JSON.")
    var json = false

    struct Row: Encodable {
        let id: Int64
        let time, actor, action, subject, peer, detail: String
    }

    func run() async throws {
        try await runReportingErrors {
            try connection.checkFiles()
            var request = Vouch_V1_ListAuditEventsRequest()
            request.afterID = after
            request.limit = limit
            let events = try await VouchClient.with(server: connection.server, credentials: connection.credentials) { client in
                try await Vouch_V1_Admin.Client(wrapping: client).listAuditEvents(request, options: connection.callOptions).events
            }
            let rows = events.map {
                Row(id: $0.id, time: iso8601($0.time), actor: $0.actor, action: $0.action, subject: $0.subject, peer: $0.peer, detail: $0.detail)
            }
            if json {
                try printJSON(rows)
            } else {
                printTable(["ID", "TIME", "ACTOR", "ACTION", "SUBJECT", "DETAIL"], rows.map {
                    ["\($0.id)", $0.time, $0.actor, $0.action, $0.subject, $0.detail]
                })
            }
        }
    }
}

struct AuditVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the audit log in the CA database: its hash chain, its head and its signed checkpoints.",
        discussion: """
            Fails on an edited, deleted or reordered row, a missing or wrong head, and a stored checkpoint whose \
            signature does not verify with DIR/intermediate.pem, or with a later intermediate of the CA (one signed \
            by DIR/root.pem, or by a root it endorsed), or whose hash differs from the chain. With \
            --checkpoint, also on a log that ends before the saved checkpoint's row (rollback) or differs from it.
            """)

    @Option(help: "CA directory made by `vouch ca init` (reads DIR/vouch.db and DIR/intermediate.pem on this host).")
    var dir: String = "./vouch-ca"

    @Option(help: "A checkpoint saved earlier by `vouch audit checkpoint --out FILE` or from GET /audit/checkpoint.")
    var checkpoint: String?

    @OptionGroup var databaseOptions: DatabaseOptions

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        try await runReportingErrors {
            let files = CAFiles(directory: dir)
            guard databaseOptions.database != nil || FileManager.default.fileExists(atPath: files.database) else {
                throw CLIError("no database at \(files.database)")
            }
            guard let intermediatePEM = try? String(contentsOfFile: files.intermediateCertificate, encoding: .utf8) else {
                throw CLIError("cannot read \(files.intermediateCertificate): checkpoints are verified with the intermediate certificate")
            }
            let intermediate = try X509Certificate(pem: intermediatePEM)
            let exported = try checkpoint.map { path in
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw CLIError("cannot read \(path)") }
                return try AuditCheckpoint(text: text)
            }
            let store = try await databaseOptions.open(files: files, logger: DatabaseOptions.commandLogger)
            let chain = try await store.auditChain()
            let checkpoints = try await store.auditCheckpoints()
            // Checkpoints signed after a rotation are the later intermediates'; they count only if
            // this directory's root vouches for them.
            guard let rootPEM = try? String(contentsOfFile: files.rootCertificate, encoding: .utf8) else {
                throw CLIError("cannot read \(files.rootCertificate): later intermediates are checked against it")
            }
            let signers = AuditCheckpoint.trustedSigners(root: try X509Certificate(pem: rootPEM), intermediate: intermediate,
                                                         issuers: try await store.issuers().issuers)
            switch AuditChain.verify(chain.rows, head: chain.head, checkpoints: checkpoints, intermediates: signers, exported: exported) {
            case .intact(let events, let head, let checked):
                if json {
                    try printJSON(["status": "intact", "events": String(events), "head": head.hex, "checkpoints": String(checked)])
                } else {
                    print("audit log intact: \(events) events, head \(head.hex), \(checked) signed checkpoints match")
                }
            case .broken(let rowID, let reason):
                if json { try printJSON(["status": "broken", "row": String(rowID), "reason": reason]) }
                throw CLIError("audit log broken at row \(rowID): \(reason)")
            }
        }
    }
}

struct AuditCheckpointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Have the server sign a checkpoint of the audit log's head; keep it off the CA host.",
        discussion: """
            Prints the checkpoint as one JSON line (or writes it to --out). Later, \
            `vouch audit verify --dir DIR --checkpoint FILE` fails if the log was rewritten or rolled back past it.
            """)

    @OptionGroup var connection: AdminConnectionOptions

    @Option(help: "Write the checkpoint line to this file instead of stdout.")
    var out: String?

    @Flag(help: "Print the checkpoint's fields as JSON.")
    var json = false

    func run() async throws {
        try await runReportingErrors {
            try connection.checkFiles()
            let response = try await VouchClient.with(server: connection.server, credentials: connection.credentials) { client in
                try await Vouch_V1_Admin.Client(wrapping: client).getAuditCheckpoint(Vouch_V1_GetAuditCheckpointRequest(),
                                                                                      options: connection.callOptions)
            }
            let checkpoint = try AuditCheckpoint(text: response.text)
            // Where the intermediate certificate is at hand, refuse to save a checkpoint it did not sign:
            // DIR/intermediate.pem, or after a rotation the copy of the later one in DIR/issuers/<serial>/.
            let files = CAFiles(directory: connection.dir)
            let later = SerialNumber.canonicalHex(checkpoint.signer) == checkpoint.signer
                ? files.directory.appendingPathComponent("issuers/\(checkpoint.signer)/certificate.pem").path : nil
            let signerPath = later.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil } ?? files.intermediateCertificate
            if let pem = try? String(contentsOfFile: signerPath, encoding: .utf8),
               let problem = checkpoint.signatureProblem(certificate: try X509Certificate(pem: pem)) {
                throw CLIError("the server's checkpoint is not valid: \(problem)")
            }
            if let out {
                try AtomicFile.write(Array((checkpoint.text + "\n").utf8), to: out)
            }
            if json {
                try printJSON(["row": String(checkpoint.rowID), "hash": checkpoint.hash.hex, "time": checkpoint.time.formatted(.iso8601),
                               "signer": checkpoint.signer, "text": checkpoint.text])
            } else if out == nil {
                print(checkpoint.text)
            } else {
                print("audit checkpoint at row \(checkpoint.rowID) saved to \(out!)")
            }
        }
    }
}
