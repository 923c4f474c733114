import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VouchAgent
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchHTTP
import VouchIdentityRules

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Enroll, keep a certificate fresh on disk, and serve a local mTLS status API that hot-reloads it.")

    @Option(help: "YAML config file (agent: section); flags override it. See docs/configuration.md.")
    var config: String?

    @Option(help: ArgumentHelp("CA server address, HOST:PORT; replicas as HOST1:PORT,HOST2:PORT (required here or as agent.ca).",
                               discussion: "The agent uses the replica that last answered and moves to the next one only when a call gets no answer."))
    var ca: [String] = []

    @Option(help: "Trust bundle to verify the CA at enrollment; roots added later must be endorsed by one in it (bundle.pem from `vouch ca init`; required here or as agent.ca_bundle).")
    var caBundle: String?

    @Option(help: "SPIFFE ID the CA server must present (default: spiffe://<trust domain>/vouch/server).")
    var caSpiffeId: String?

    @Option(help: "File holding a one-time enrollment token (needed for the first start or after expiry).")
    var tokenFile: String?

    @Option(help: "Directory for svid.pem, svid_key.pem, chain.pem, bundle.pem (required here or as agent.out).")
    var out: String?

    @Option(help: "Serve the local mTLS status and health API on HOST:PORT.")
    var listen: HostPort?

    @Option(help: "Serve Prometheus metrics over HTTP at http://HOST:PORT/metrics.")
    var metrics: HostPort?

    @Option(help: "Certificate lifetime to request, e.g. 24h or 2m (default 24h).")
    var certTtl: DurationArgument?

    @Option(help: "Renew after this fraction of the lifetime, jittered (default 0.66).")
    var renewFraction: Double?

    @Option(help: "Key type: p256, p384, ed25519, rsa2048, rsa3072, rsa4096 (default p256).")
    var keyType: String?

    @Option(help: "Shell command run after each rotation, CRL or trust bundle change (VOUCH_CHANGED, VOUCH_SERIAL and VOUCH_DIR are set).")
    var exec: String?

    @Option(help: "Signal sent after each rotation, CRL or trust bundle change to the process in --pid-file, e.g. HUP.")
    var signal: String?

    @Option(help: "File holding the pid to signal.")
    var pidFile: String?

    @Option(help: "Signal only if the pid file's process has this name (as in /proc/PID/comm), e.g. nginx.")
    var signalProcessName: String?

    @Option(help: "Longest an --exec hook may run before its process group is killed (default 30s).")
    var hookTimeout: DurationArgument?

    @Option(help: "Changes within this time of the first one run the hooks once, together (default 1s; 0 runs them at once).")
    var hookDebounce: DurationArgument?

    @Option(help: "Which changes run the hooks: a comma list of certificate, crl, bundle (default all three).")
    var hookOn: String?

    @OptionGroup var listenerLimits: ListenerLimitOptions

    @OptionGroup var outputFiles: AgentFileOptions

    @OptionGroup var workloadAPI: WorkloadAPIOptions

    @Option(help: "Longest wait between failed renewal attempts (default 30s).")
    var maxBackoff: DurationArgument?

    @Option(help: "Deadline for each call to the CA (default 10s).")
    var rpcTimeout: DurationArgument?

    @Option(help: "How often to fetch the CRL as a fallback to the revocation stream (default 60s).")
    var crlRefresh: DurationArgument?

    @Option(help: "How often to report to the CA for `vouch fleet list` when nothing changed, ±10% (default 5m; 0: only on rotations, bundle changes and errors).")
    var heartbeat: DurationArgument?

    @OptionGroup var logging: LoggingOptions

    static func signalNumber(_ name: String) -> Int32? {
        let table: [String: Int32] = ["HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "USR1": SIGUSR1, "USR2": SIGUSR2,
                                      "TERM": SIGTERM, "WINCH": SIGWINCH]
        let upper = name.uppercased()
        return Int32(name) ?? table[upper.hasPrefix("SIG") ? String(upper.dropFirst(3)) : upper]
    }

    /// `--hook-on certificate,crl`: the kinds named, each known; all when not given.
    static func hookKinds(_ list: String?) throws -> FileChange {
        guard let list else { return .all }
        switch FileChange.parse(list) {
        case .success(let kinds): return kinds
        case .failure(let unknown): throw CLIError("--hook-on: \(unknown)")
        }
    }

    /// Flags over the config file over defaults, checked as a whole.
    func resolvedConfiguration(_ file: ConfigFile.AgentSection?) throws -> (AgentConfiguration, metrics: HostPort?) {
        guard let ca = try CAAddressList.resolved(flags: ca, file: file?.ca) else { throw CLIError("--ca is required (or agent.ca in --config)") }
        guard let caBundle = caBundle ?? file?.caBundle else { throw CLIError("--ca-bundle is required (or agent.ca_bundle in --config)") }
        guard let out = out ?? file?.out else { throw CLIError("--out is required (or agent.out in --config)") }
        let renewFraction = renewFraction ?? file?.renewFraction ?? 0.66
        guard renewFraction > 0.1, renewFraction < 0.95 else { throw CLIError("--renew-fraction must be between 0.1 and 0.95") }
        let keyType = keyType ?? file?.keyType ?? "p256"
        guard let algorithm = KeyAlgorithm(rawValue: keyType) else { throw CLIError("unknown --key-type \(keyType)") }
        let signal = signal ?? file?.signal, pidFile = pidFile ?? file?.pidFile
        guard (signal == nil) == (pidFile == nil) else { throw CLIError("--signal and --pid-file go together") }
        if let signal, Self.signalNumber(signal) == nil { throw CLIError("unknown signal \(signal)") }
        let certTtl = try certTtl ?? configDuration(file?.certTTL, key: "agent.cert_ttl") ?? DurationArgument(argument: "24h")!
        let maxBackoff = try maxBackoff ?? configDuration(file?.maxBackoff, key: "agent.max_backoff") ?? DurationArgument(argument: "30s")!
        let rpcTimeout = try rpcTimeout ?? configDuration(file?.rpcTimeout, key: "agent.rpc_timeout") ?? DurationArgument(argument: "10s")!
        let crlRefresh = try crlRefresh ?? configDuration(file?.crlRefresh, key: "agent.crl_refresh") ?? DurationArgument(argument: "60s")!
        let configuration = AgentConfiguration(
            caAddress: ca.first, caBundlePath: caBundle, tokenFilePath: tokenFile ?? file?.tokenFile, outDirectory: out,
            listen: try listen ?? configAddress(file?.listen, key: "agent.listen"),
            certificateTTL: certTtl.duration, renewFraction: renewFraction, keyAlgorithm: algorithm,
            execCommand: exec ?? file?.exec, signal: signal.flatMap(Self.signalNumber), pidFile: pidFile,
            maximumBackoff: maxBackoff.duration, rpcTimeout: .seconds(max(1, rpcTimeout.seconds)),
            crlRefreshInterval: .seconds(max(1, crlRefresh.seconds)))
        var limited = configuration
        limited.caAddresses = ca
        limited.listenerLimits = try listenerLimits.resolved(handshake: file?.handshakeTimeout, idle: file?.idleTimeout,
                                                             maxConnections: file?.maxConnections, section: "agent")
        let hookTimeout = try hookTimeout ?? configDuration(file?.hookTimeout, key: "agent.hook_timeout") ?? DurationArgument(argument: "30s")!
        guard hookTimeout.seconds > 0 else { throw CLIError("--hook-timeout must be positive") }
        limited.hookTimeout = .seconds(hookTimeout.seconds)
        limited.signalProcessName = signalProcessName ?? file?.signalProcessName
        let hookDebounce = try hookDebounce ?? configDuration(file?.hookDebounce, key: "agent.hook_debounce") ?? DurationArgument(argument: "1s")!
        // Servers reload only after the debounce: a typo such as 1000d would leave them on old files.
        guard hookDebounce.seconds <= 300 else { throw CLIError("--hook-debounce must be at most 5m") }
        limited.hookDebounce = .seconds(hookDebounce.seconds)
        limited.hookOn = try Self.hookKinds(hookOn ?? file?.hookOn)
        (limited.outputFileNames, limited.keystorePassword) = try outputFiles.resolved(file)
        limited.caServerID = caSpiffeId ?? file?.caSpiffeID
        let heartbeat = try heartbeat ?? configDuration(file?.heartbeat, key: "agent.heartbeat") ?? DurationArgument(argument: "5m")!
        limited.heartbeat = heartbeat.duration
        limited.workloadAPI = try workloadAPI.resolved(file)
        if let id = limited.caServerID, IdentityRules.trustDomain(ofSPIFFEID: id) == nil {
            throw CLIError("--ca-spiffe-id \(id) is not a SPIFFE ID")
        }
        if limited.signalProcessName != nil, limited.signal == nil { throw CLIError("--signal-process-name needs --signal and --pid-file") }
        return (limited, try metrics ?? configAddress(file?.metrics, key: "agent.metrics"))
    }

    func run() async throws {
        try await runReportingErrors {
            umask(0o077)
            let file = try config.map(ConfigFile.load)?.agent
            let (configuration, metrics) = try resolvedConfiguration(file)
            try logging.bootstrap(configLevel: file?.logLevel, configFormat: file?.logFormat)
            let logger = Logger(label: "vouch.agent")
            let registry = metrics.map { _ in PrometheusBootstrap.install() }
            let agent = Agent(configuration: configuration, logger: logger, onListening: { address in
                print("vouch agent listening on \(address)")
                fflush(nil)
            })
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: agent)]
            if let metrics, let registry {
                services.append(.init(service: HTTPEndpoint(host: metrics.host, port: metrics.port, limits: configuration.listenerLimits,
                                                            onLimitReached: connectionLimitLogger(logger, listener: "metrics"),
                                                            onListening: { port in
                    print("vouch agent metrics on \(HostPort(host: metrics.host, port: port))")
                    fflush(nil)
                }) { request in
                    guard request.method == "GET", request.path == "/metrics" else { return .text(404, "see /metrics") }
                    agent.refreshGauges()
                    return PrometheusBootstrap.scrape(registry)
                }))
            }
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        }
    }
}
