import VouchAPI

/// `/fleet?stale=10m&problems=1`: the agents as the CA judges them from their reports, problems first.
enum FleetPage {
    static let cap = 10_000

    static func load(_ reader: any AdminReader, query: QueryString) async throws -> Page {
        let problemsOnly = query["problems"] == "1"
        let staleText = query["stale"].flatMap { $0.isEmpty ? nil : $0 } ?? "10m"
        let staleSeconds = seconds(staleText) ?? 600
        var request = Vouch_V1_ListAgentsRequest()
        request.staleAfterSeconds = staleSeconds
        request.problemsOnly = problemsOnly
        request.pageSize = 1000
        var agents: [Vouch_V1_AgentInfo] = []
        do {
            repeat {
                let page = try await reader.listAgents(request)
                agents += page.agents
                // A page without agents makes no progress: its token is not followed (a CA that sent one would be asked for ever).
                request.pageToken = page.agents.isEmpty ? "" : page.nextPageToken
            } while !request.pageToken.isEmpty && agents.count < cap
        } catch where error.isUnavailableCall {
            return Page(title: "Fleet", content: [
                el("p", ["class": "notice", "id": "fleet-unavailable"],
                   text("The CA does not answer Admin/ListAgents (a Vouch CA older than the fleet view): no fleet to show. "
                        + "(\(error.pageDescription))")),
            ])
        }
        // Stable: the CA's order (by SPIFFE ID) within each group.
        let ordered = agents.filter { !$0.problems.isEmpty } + agents.filter { $0.problems.isEmpty }
        let troubled = agents.count - agents.filter { $0.problems.isEmpty }.count
        let rows = ordered.map { agent in
            el("tr", ["data-lineage": agent.lineage, "class": agent.problems.isEmpty ? "healthy" : "has-problems"],
               agent.problems.isEmpty ? cell("ok", "state-ok") : cell(agent.problems.map(\.name).joined(separator: ", "), "problem"),
               cell(agent.spiffeID, "spiffe"),
               cell(agent.hostName, "host"),
               cell(agent.servingSerial, "serial"),
               cell(DashboardTime.text(agent.servingNotAfter), "mono"),
               cell(DashboardTime.text(agent.lastReport), "mono"),
               cell(agent.agentVersion),
               cell(agent.lastError, "error"))
        }
        return Page(title: "Fleet", content: [
            el("form", ["class": "search", "method": "get", "action": PageLayout.relative("/fleet")],
               el("input", ["type": "search", "name": "stale", "value": staleText, "class": "short", "aria-label": "Silent after",
                            "title": "Silent after this long without a report (e.g. 10m, 1h)"]),
               el("label", [:], problemsOnly
                   ? el("input", ["type": "checkbox", "name": "problems", "value": "1", "checked": "checked"])
                   : el("input", ["type": "checkbox", "name": "problems", "value": "1"]),
                  " problems only"),
               el("button", ["type": "submit"], "Show")),
            el("p", ["class": "summary", "id": "fleet-summary"],
               text("\(agents.count) agent\(agents.count == 1 ? "" : "s"), \(troubled) with problems; silent after \(staleSeconds) s without a report.")),
            table("fleet", headers: ["Problems", "SPIFFE ID", "Host", "Serving serial", "Not after", "Last report", "Version", "Last error"],
                  rows: rows, empty: problemsOnly ? "No agent has a problem." : "No agent has reported to the CA."),
        ])
    }

    /// `90`, `90s`, `10m`, `2h`, `1d` in seconds; nil otherwise.
    static func seconds(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var digits = Substring(text), unit: Int64 = 1
        if let last = text.last, let multiplier = units[last] {
            digits = digits.dropLast()
            unit = multiplier
        }
        guard let value = Int64(digits), value > 0, value <= 365 * 86400 / unit else { return nil }
        return value * unit
    }
}
