import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VouchAPI
import VouchAuthority
import VouchConnectionLimits
import VouchHTTP
import VouchSQLiteStore

struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server", abstract: "Run the CA server (gRPC over mTLS, TLS 1.3 only).")

    @Option(help: "YAML config file (server: section); flags override it. See docs/configuration.md.")
    var config: String?

    @Option(help: "CA directory made by `vouch ca init` (default ./vouch-ca).")
    var dir: String?

    @Option(help: "Address to listen on, HOST:PORT; port 0 picks a free one (default 127.0.0.1:8443).")
    var listen: HostPort?

    @Option(help: "Passphrase file for encrypted CA keys (or set VOUCH_CA_PASSPHRASE).")
    var passphraseFile: String?

    @Option(name: .customLong("pkcs11-module"),
            help: ArgumentHelp("PKCS#11 module (.so) of the token holding the CA keys (default: ca.json's).", valueName: "path"))
    var pkcs11Module: String?

    @Option(name: .customLong("pkcs11-token"), help: ArgumentHelp("Label of that token (default: ca.json's).", valueName: "label"))
    var pkcs11Token: String?

    @Option(name: .customLong("pkcs11-pin-file"),
            help: ArgumentHelp("File holding the token's user PIN; needed when the CA keys are in a token.", valueName: "file"))
    var pkcs11PinFile: String?

    // Tests: the longest wait between attempts to recover a failed token (default 10s).
    @Option(name: .customLong("pkcs11-longest-retry"), help: .hidden)
    var pkcs11LongestRetry: DurationArgument?

    // Tests: how often a working token is probed (default 10s).
    @Option(name: .customLong("pkcs11-probe-interval"), help: .hidden)
    var pkcs11ProbeInterval: DurationArgument?

    @Option(help: "Certificate lifetime when a request does not ask for one (default 24h).")
    var defaultTtl: DurationArgument?

    @Option(help: "Longest certificate lifetime issued (default 168h).")
    var maxTtl: DurationArgument?

    @Option(name: .customLong("admin-id"), help: "Extra admin SPIFFE ID (repeatable); the init admin is always one.")
    var adminIDs: [String] = []

    @Option(help: "Also serve plain HTTP on HOST:PORT: /crl, /ocsp, /healthz, /metrics and /audit/checkpoint.")
    var http: HostPort?

    @Option(help: "URL written into issued certificates' CRL distribution point (e.g. http://ca.internal:8080/crl).")
    var crlURL: String?

    @Option(help: "How often to sign an audit checkpoint when the audit log moved (default 60s; also at start and shutdown).")
    var auditCheckpointInterval: DurationArgument?

    @Option(help: "How long a renewed certificate may renew once more, for a client that lost the response (default 60s).")
    var renewalRetryWindow: DurationArgument?

    @Option(help: "Revocations a non-admin identity may make of its own certificates per 24 hours (default 10).")
    var selfRevocationLimit: Int?

    @Option(help: "Lifetime of the certificate the server issues itself for its gRPC listener, renewed at 2/3 (default 24h; 0: serve server.pem).")
    var serverCertTtl: DurationArgument?

    @Option(help: "How long after expiry a certificate may still renew itself (Renew only); 0 = never (default 0).")
    var renewAfterExpiry: DurationArgument?

    @Option(help: "An agent whose last report is older counts as silent in the vouch_ca_agents metric (default 10m).")
    var agentStaleAfter: DurationArgument?

    @OptionGroup var databaseOptions: DatabaseOptions

    @OptionGroup var listenerLimits: ListenerLimitOptions

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        try await runReportingErrors {
            umask(0o077)
            let file = try config.map(ConfigFile.load)?.server
            try logging.bootstrap(configLevel: file?.logLevel, configFormat: file?.logFormat)
            let logger = Logger(label: "vouch.server")
            let dir = self.dir ?? file?.dir ?? "./vouch-ca"
            let listen = try self.listen ?? configAddress(file?.listen, key: "server.listen") ?? HostPort(host: "127.0.0.1", port: 8443)
            let http = try self.http ?? configAddress(file?.http, key: "server.http")
            let defaultTtl = try self.defaultTtl ?? configDuration(file?.defaultTTL, key: "server.default_ttl") ?? DurationArgument(argument: "24h")!
            let maxTtl = try self.maxTtl ?? configDuration(file?.maxTTL, key: "server.max_ttl") ?? DurationArgument(argument: "168h")!
            let files = CAFiles(directory: dir)
            // Opened once, before any key is loaded: the initial intermediate and later ones (also on the
            // follower's reloads) find their `pkcs11:` keys in it through `material.token`.
            let pkcs11Token = try PKCS11Opening.open(
                module: pkcs11Module ?? file?.pkcs11Module, token: self.pkcs11Token ?? file?.pkcs11Token,
                pinFile: pkcs11PinFile ?? file?.pkcs11PinFile, settings: try CASettings.load(from: files), flags: .intermediate)
            let material = try CAMaterial.load(from: files, passphrase: try readPassphrase(file: passphraseFile ?? file?.passphraseFile),
                                               token: pkcs11Token)
            let trustDomain = material.settings.trustDomain
            var policy = IssuancePolicy(trustDomain: trustDomain, defaultCertificateTTL: TimeInterval(defaultTtl.seconds),
                                        maximumCertificateTTL: TimeInterval(maxTtl.seconds), crlDistributionPoint: crlURL ?? file?.crlURL)
            policy.adminIDs.formUnion(adminIDs + (file?.admins ?? []))
            policy.profiles = try (file?.profiles ?? []).map { try $0.certificateProfile() }
            if let renewalRetryWindow = try renewalRetryWindow ?? configDuration(file?.renewalRetryWindow, key: "server.renewal_retry_window") {
                policy.renewalRetryWindow = TimeInterval(renewalRetryWindow.seconds)
            }
            if let selfRevocationLimit = selfRevocationLimit ?? file?.selfRevocationLimit {
                policy.selfRevocationLimit = selfRevocationLimit
            }
            if let renewAfterExpiry = try renewAfterExpiry ?? configDuration(file?.renewAfterExpiry, key: "server.renew_after_expiry") {
                policy.renewAfterExpiry = TimeInterval(renewAfterExpiry.seconds)
            }
            let serverCertTtl = try self.serverCertTtl ?? configDuration(file?.serverCertTTL, key: "server.server_cert_ttl")
                ?? DurationArgument(argument: "24h")!
            guard serverCertTtl.seconds == 0 || serverCertTtl.seconds >= 10 else {
                throw CLIError("--server-cert-ttl must be at least 10s (or 0: serve server.pem as it is)")
            }
            let agentStaleAfter = try self.agentStaleAfter ?? configDuration(file?.agentStaleAfter, key: "server.agent_stale_after")
                ?? DurationArgument(argument: "10m")!
            guard agentStaleAfter.seconds > 0 else { throw CLIError("--agent-stale-after must be positive") }
            do {
                try policy.validate()
            } catch let error as AuthorityError {
                throw CLIError(error.message)
            }
            let store = try await databaseOptions.open(files: files, configDatabase: file?.database,
                                                       configPasswordFile: file?.databasePasswordFile, serving: true, logger: logger)
            try await PKCS11Opening.refuseTokenKeysWithoutToken(in: store, token: pkcs11Token)
            let authority = CertificateAuthority(store: store, material: material, policy: policy, warn: { logger.warning("\($0)") })
            try await authority.start()
            let listenerIdentity = serverCertTtl.seconds == 0 ? nil : try await ServerListenerIdentity(
                authority: authority, store: store, files: files, lifetime: TimeInterval(serverCertTtl.seconds), logger: logger)
            let auditCheckpointInterval = try self.auditCheckpointInterval
                ?? configDuration(file?.auditCheckpointInterval, key: "server.audit_checkpoint_interval") ?? DurationArgument(argument: "60s")!
            guard auditCheckpointInterval.seconds > 0 else { throw CLIError("--audit-checkpoint-interval must be positive") }
            let auditCheckpoints = AuditCheckpointer(store: store, authority: authority)
            let limits = try listenerLimits.resolved(handshake: file?.handshakeTimeout, idle: file?.idleTimeout,
                                                     maxConnections: file?.maxConnections, section: "server")
            let server = CAServer(authority: authority, files: files, address: listen, logger: logger,
                                  auditCheckpoints: auditCheckpoints, limits: limits, listenerIdentity: listenerIdentity,
                                  token: pkcs11Token) { address in
                print("vouch server listening on \(address)")
                fflush(nil)
            }
            // First, so it stops last and its final checkpoint covers the listeners' last events.
            var services: [any Service] = [AuditCheckpointService(
                checkpointer: auditCheckpoints, interval: .seconds(auditCheckpointInterval.seconds), logger: logger)]
            if let listenerIdentity { services.append(listenerIdentity) }
            services.append(server)
            if let http {
                let registry = PrometheusBootstrap.install()
                MetricsInterceptor.registerCertificateCounters()
                services.append(HTTPEndpoint(host: http.host, port: http.port, limits: limits,
                                             onLimitReached: connectionLimitLogger(logger, listener: "http"), onListening: { port in
                    print("vouch server http on \(HostPort(host: http.host, port: port))")
                    fflush(nil)
                }, handler: CAHTTPRoutes.handler(authority: authority, store: store, metrics: {
                    await CAGauges.refresh(authority: authority, store: store, token: pkcs11Token,
                                           agentStaleAfter: TimeInterval(agentStaleAfter.seconds))
                    return PrometheusBootstrap.scrape(registry)
                }, auditCheckpoints: auditCheckpoints, token: pkcs11Token)))
            }
            // A token that fails at run time is recovered from here (signing answers unavailable meanwhile).
            if let pkcs11Token {
                var timing = TokenWatch.Timing()
                if let longest = pkcs11LongestRetry, longest.seconds > 0 { timing.longestRetry = .seconds(longest.seconds) }
                timing.firstRetry = min(timing.firstRetry, timing.longestRetry)
                if let probe = pkcs11ProbeInterval, probe.seconds > 0 { timing.probeInterval = .seconds(probe.seconds) }
                services.append(TokenWatch(token: pkcs11Token, logger: logger, timing: timing))
            }
            // Issuer changes (the CLI's rotate, prepare, activate, retire) reach this replica without a
            // restart: polled every 2 s, and at once when a shared store announces one.
            let (issuerAnnouncements, announceIssuers) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
            let feed = store as? any RevocationChangeFeed
            services.append(IssuerFollower(authority: authority, store: store, announcements: feed == nil ? nil : issuerAnnouncements,
                                           logger: logger))
            // Admin certificates that need `ca admin-cert`, once at start; idle retiring intermediates retired hourly.
            services.append(IssuerHousekeeping(store: store, adminIDs: policy.adminIDs, directory: files.directory.path, logger: logger))
            // Replicas sharing a database: revocations the others commit reach this one's registry.
            if let feed {
                services.append(SharedRevocationFollower(authority: authority, feed: feed, logger: logger,
                                                         issuersChanged: { announceIssuers.yield() }))
            }
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        }
    }
}
