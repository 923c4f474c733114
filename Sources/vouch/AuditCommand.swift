import ArgumentParser
import Foundation
import VouchAPI
import VouchAuthority
import VouchSQLiteStore

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Read the audit log.", subcommands: [AuditList.self, AuditVerify.self])
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
        abstract: "Check the audit log's hash chain in the CA database; fails on an edited, deleted or reordered row.")

    @Option(help: "CA directory made by `vouch ca init` (reads DIR/vouch.db on this host).")
    var dir: String = "./vouch-ca"

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        try await runReportingErrors {
            let files = CAFiles(directory: dir)
            guard FileManager.default.fileExists(atPath: files.database) else { throw CLIError("no database at \(files.database)") }
            let chain = try await SQLiteAuthorityStore(path: files.database).auditChain()
            switch AuditChain.verify(chain.rows, head: chain.head) {
            case .intact(let events, let head):
                let hex = head.map { String(format: "%02x", $0) }.joined()
                if json {
                    try printJSON(["status": "intact", "events": String(events), "head": hex])
                } else {
                    print("audit log intact: \(events) events, head \(hex)")
                }
            case .broken(let rowID, let reason):
                if json { try printJSON(["status": "broken", "row": String(rowID), "reason": reason]) }
                throw CLIError("audit log broken at row \(rowID): \(reason)")
            }
        }
    }
}
