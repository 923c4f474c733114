import ArgumentParser
import VouchAgent

/// `--workload-api unix:///PATH` and its companions of `vouch agent`: the SPIFFE Workload API on a
/// Unix socket, and who may connect to it.
struct WorkloadAPIOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Serve the SPIFFE Workload API (X.509-SVIDs and bundles) on this Unix socket, e.g. unix:///run/vouch/agent.sock, in a directory only root or the agent's user can write (created if missing).",
                               valueName: "unix:///PATH"))
    var workloadApi: String?

    @Option(help: ArgumentHelp("Permission bits of the socket, in octal (default 0600: only its owner can connect).", valueName: "MODE"))
    var workloadApiMode: String?

    @Option(help: ArgumentHelp("Owner of the socket, a user name or uid, optionally with :GROUP.", valueName: "USER[:GROUP]"))
    var workloadApiOwner: String?

    @Option(help: ArgumentHelp("Serve only callers with these uids (comma list), as the kernel reports the connecting process; others are disconnected.",
                               valueName: "UID,..."))
    var workloadApiAllowUid: String?

    /// The flags over the config file's `workload_api*` keys; nil when no socket is named.
    func resolved(_ file: ConfigFile.AgentSection?) throws -> WorkloadAPIConfiguration? {
        let mode = workloadApiMode ?? file?.workloadAPIMode, owner = workloadApiOwner ?? file?.workloadAPIOwner
        let allow = workloadApiAllowUid ?? file?.workloadAPIAllowUID.map { $0.map(String.init).joined(separator: ",") }
        guard let uri = workloadApi ?? file?.workloadAPI else {
            if mode != nil || owner != nil || allow != nil { throw CLIError("--workload-api-mode, -owner and -allow-uid need --workload-api") }
            return nil
        }
        do {
            var configuration = WorkloadAPIConfiguration(socketPath: try WorkloadAPIConfiguration.socketPath(fromURI: uri))
            if let mode { configuration.mode = try WorkloadAPIConfiguration.mode(fromOctal: mode) }
            if let owner { (configuration.owner, configuration.group) = try WorkloadAPIConfiguration.owner(from: owner) }
            if let allow { configuration.allowedUIDs = try WorkloadAPIConfiguration.uids(fromList: allow) }
            return configuration
        } catch let error as WorkloadAPIConfigurationError {
            throw CLIError(error.description)
        }
    }
}
