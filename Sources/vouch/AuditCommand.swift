import ArgumentParser
import Foundation
import VouchAPI

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Read the audit log.", subcommands: [AuditList.self])
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
