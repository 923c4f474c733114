import ArgumentParser
import Foundation
import GRPCCore
import VouchAPI

struct FleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet", abstract: "What the agents report: which certificate each serves, and what is wrong.",
        subcommands: [FleetList.self])
}

/// What the CA sees wrong with an agent, as the CLI names it.
enum FleetProblem {
    /// For `--help`: each problem and what to do about it.
    static let help = """
        PROBLEMS (judged by the CA from each agent's latest report):
          serving_expired     the certificate the agent serves is past its
                              notAfter: it could not renew in time and can no
                              longer authenticate; give it a new token
          serving_revoked     the certificate the agent serves is revoked: give
                              it a new token, or stop it
          serving_superseded  the CA renewed the agent's certificate over a
                              minute ago but the agent still serves the old one
                              (new files not written or not loaded: disk full,
                              failed reload)
          old_bundle          the agent's bundle.pem does not hold the CA's
                              current roots (a root rollover it did not follow)
          silent              no report for longer than --stale: the agent is
                              stopped, its host is down, or it cannot reach
                              the CA
          renewal_failing     the agent's last renewal attempt failed (last_error
                              in --json)
        Agents with problems come first; agents that stop reporting stay listed,
        as silent.
        """
}

/// An agent as `vouch fleet list --json` prints it.
struct AgentJSON: Encodable {
    let lineage, spiffe_id, host_name, agent_version, serving_serial, serving_not_after: String
    let serving_superseded_by: String?
    let trust_generation: Int64
    let bundle_sha256: String
    let root_serials: [String]
    let last_rotation: String?
    let last_error: String?
    let last_error_at: String?
    let rotations, failures: Int64
    let first_seen, last_report: String
    let peer, reported_by_serial: String
    let problems: [String]

    init(_ info: Vouch_V1_AgentInfo) {
        lineage = info.lineage
        spiffe_id = info.spiffeID
        host_name = info.hostName
        agent_version = info.agentVersion
        serving_serial = info.servingSerial
        serving_not_after = iso8601(info.servingNotAfter)
        serving_superseded_by = info.servingSupersededBy.isEmpty ? nil : info.servingSupersededBy
        trust_generation = info.trustGeneration
        bundle_sha256 = info.bundleSha256.map { String(format: "%02x", $0) }.joined()
        root_serials = info.rootSerials
        last_rotation = info.lastRotation == 0 ? nil : iso8601(info.lastRotation)
        last_error = info.lastError.isEmpty ? nil : info.lastError
        last_error_at = info.lastErrorAt == 0 ? nil : iso8601(info.lastErrorAt)
        rotations = info.rotations
        failures = info.failures
        first_seen = iso8601(info.firstSeen)
        last_report = iso8601(info.lastReport)
        peer = info.peer
        reported_by_serial = info.reportedBySerial
        problems = info.problems.map(\.name)
    }
}

struct FleetList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List every agent that reported, with what the CA sees wrong; problems first.",
        discussion: FleetProblem.help)

    @OptionGroup var connection: AdminConnectionOptions

    @Option(help: "An agent without a report for this long is silent (default 10m).")
    var stale: DurationArgument?

    @Flag(help: "Only agents with at least one problem.")
    var problems = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    /// Stops a server that hands out page tokens without end.
    static let maximumPages = 10_000

    func run() async throws {
        try await runReportingErrors {
            try connection.checkFiles()
            let stale = stale?.seconds ?? 600
            guard stale > 0 else { throw CLIError("--stale must be positive") }
            var request = Vouch_V1_ListAgentsRequest()
            request.staleAfterSeconds = stale
            request.problemsOnly = problems
            request.pageSize = 1000
            let agents = try await VouchClient.with(server: connection.server, credentials: connection.credentials) { client in
                let admin = Vouch_V1_Admin.Client(wrapping: client)
                var all: [Vouch_V1_AgentInfo] = []
                var pages = 0
                repeat {
                    let page: Vouch_V1_ListAgentsResponse
                    do {
                        page = try await admin.listAgents(request, options: connection.callOptions)
                    } catch let error as RPCError where error.code == .unimplemented {
                        throw CLIError("the CA at \(connection.server) does not list agents (a version before the fleet view): upgrade it")
                    }
                    all += page.agents
                    request.pageToken = page.nextPageToken
                    pages += 1
                } while !request.pageToken.isEmpty && pages < Self.maximumPages
                return all
            }
            if json {
                try printJSON(agents.map(AgentJSON.init))
            } else {
                let now = Date()
                printTable(["SPIFFE ID", "HOST", "SERVING", "NOT AFTER", "LAST REPORT", "VERSION", "PROBLEMS"], agents.map { agent in
                    [agent.spiffeID, agent.hostName, agent.servingSerial, iso8601(agent.servingNotAfter),
                     Self.age(since: agent.lastReport, now: now), agent.agentVersion,
                     agent.problems.isEmpty ? "-" : agent.problems.map(\.name).joined(separator: ",")]
                })
            }
        }
    }

    /// `5s ago`, `3m ago`, `2h ago`, `4d ago`.
    static func age(since seconds: Int64, now: Date) -> String {
        guard seconds > 0 else { return "never" }
        let elapsed = max(0, Int64(now.timeIntervalSince1970) - seconds)
        switch elapsed {
        case ..<120: return "\(elapsed)s ago"
        case ..<7200: return "\(elapsed / 60)m ago"
        case ..<172_800: return "\(elapsed / 3600)h ago"
        default: return "\(elapsed / 86400)d ago"
        }
    }
}
