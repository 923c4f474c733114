import Foundation
import Logging
import ServiceLifecycle
import VouchAPI
import VouchCrypto
import VouchHTTP
import VouchTLS
import X509

/// `vouch agent` as a ServiceLifecycle service: obtains an identity, then runs its parts as
/// services of one group (the local mTLS status server, the renewal loop, the revocation
/// stream, the CRL refresh), so each one stops gracefully with the agent.
public final class Agent: Service, Sendable {
    public let configuration: AgentConfiguration
    public let state: AgentState
    let files: IdentityFiles
    let logger: Logger
    let hooks: FileChangeHooks
    let keeper: IdentityKeeper
    /// Told the bound address of the local server.
    let onListening: @Sendable (HostPort) -> Void
    public let revocations: RevocationFollower
    /// Follows the CA's trust bundle (root rollovers, new intermediates).
    public let trust: TrustFollower
    /// Tells the CA what the agent serves and trusts (`vouch fleet list`).
    let fleet: FleetReporter
    /// The SPIFFE Workload API on a Unix socket (`--workload-api`), fed by the same file changes as the hooks.
    let workloadAPI: WorkloadAPI

    /// - Parameter onIdentity: told about each new certificate (first one included), e.g. for quickstart output.
    public convenience init(configuration: AgentConfiguration, logger: Logger,
                            onIdentity: @escaping @Sendable (AgentSnapshot) -> Void = { _ in },
                            onListening: @escaping @Sendable (HostPort) -> Void = { _ in }) {
        let files = IdentityFiles(directory: configuration.outDirectory, names: configuration.outputFileNames,
                                  keystorePassword: configuration.keystorePassword)
        let server = CAServerIdentity(configured: configuration.caServerID, files: files)
        let state = AgentState()
        // One set of replicas for renewal and revocations: a replica one of them found dead is
        // not tried first by the other.
        let replicas = CAReplicas(configuration.caAddresses, logger: logger, state: state)
        let ca = FailoverCalls(replicas: replicas) { address in
            CertificateAuthorityClient(address: address, bundlePath: configuration.caBundlePath,
                                       timeout: configuration.rpcTimeout, server: server)
        }
        let source = GRPCRevocationSource(bundlePath: configuration.caBundlePath, server: server, rpcTimeout: configuration.rpcTimeout)
        let bundles = GRPCTrustBundleSource(bundlePath: configuration.caBundlePath, server: server, rpcTimeout: configuration.rpcTimeout)
        let reports = GRPCFleetReportSource(bundlePath: configuration.caBundlePath, server: server, rpcTimeout: configuration.rpcTimeout)
        self.init(configuration: configuration, files: files, clock: SystemAgentClock(), ca: ca, replicas: replicas,
                  revocationSource: source, trustBundleSource: bundles, fleetReportSource: reports, state: state, logger: logger, onIdentity: onIdentity,
                  onListening: onListening)
    }

    init(configuration: AgentConfiguration, files: IdentityFiles, clock: any AgentClock, ca: any CertificateAuthorityCalls,
         replicas: CAReplicas, revocationSource: any RevocationSource, trustBundleSource: any TrustBundleSource,
         fleetReportSource: any FleetReportSource, state: AgentState,
         logger: Logger, onIdentity: @escaping @Sendable (AgentSnapshot) -> Void, onListening: @escaping @Sendable (HostPort) -> Void) {
        self.configuration = configuration
        self.state = state
        self.files = files
        self.logger = logger
        self.onListening = onListening
        let hooks = FileChangeHooks(command: configuration.execCommand, signal: configuration.signal,
                                    pidFile: configuration.pidFile, processName: configuration.signalProcessName,
                                    timeout: configuration.hookTimeout, debounce: configuration.hookDebounce,
                                    runOn: configuration.hookOn, directory: files.directory,
                                    currentSerial: { state.current.serial }, logger: logger)
        self.hooks = hooks
        let workloadAPI = WorkloadAPI(configuration: configuration.workloadAPI, files: files, clock: clock, logger: logger)
        self.workloadAPI = workloadAPI
        self.revocations = RevocationFollower(files: files, replicas: replicas, source: revocationSource,
                                              refreshInterval: configuration.crlRefreshInterval, clock: clock, logger: logger,
                                              onFilesChanged: { hooks.notify($0); workloadAPI.changed() })
        let wake = RenewalWake()
        let trust = TrustFollower(files: files, trust: AgentTrust(configuration: configuration, files: files), replicas: replicas,
                                  source: trustBundleSource, clock: clock, state: state, logger: logger, renewSoon: { [logger] in
            logger.info("renewing early: the CA no longer vouches for the root of the current certificate")
            wake.request()
        }, onFilesChanged: { hooks.notify($0); workloadAPI.changed() })
        self.trust = trust
        // Reports follow the state: the served serial, the bundle held, renewal errors.
        self.fleet = FleetReporter(replicas: replicas, source: fleetReportSource, state: state, clock: clock, logger: logger,
                                   heartbeat: configuration.heartbeat.timeInterval)
        self.keeper = IdentityKeeper(configuration: configuration, files: files, ca: ca, hooks: hooks, revocations: revocations,
                                     clock: clock, state: state, logger: logger, onIdentity: { snapshot in
            // A new certificate is confirmed to the CA under its own serial.
            trust.identityChanged()
            workloadAPI.changed()
            onIdentity(snapshot)
        }, wake: wake)
    }

    public func run() async throws {
        // Listening before enrolling: a workload that asks meanwhile is told Unavailable, not "no such socket".
        let workloadServer = try await workloadAPI.start(limits: configuration.listenerLimits)
        defer { workloadServer?.stop() }
        try await keeper.obtainInitialIdentity()
        await revocations.loadSavedCRL()
        do {
            // From what is on disk: an upgraded agent, or new --file names, need not wait for a rotation.
            try IdentityWriter.writeDerived(files, logger: logger)
        } catch {
            logger.warning("could not write the derived files (fullchain.pem, crl.pem, ...); writing them with the next change",
                           metadata: ["error": "\(describe(error))"])
        }
        let rootCRLs = RootCRLRevocations(files: files)
        let tls = try RotatingServerTLS(files: files, isRevoked: { [revocations] in revocations.isRevoked($0) },
                                        isRevokedByIssuer: { [rootCRLs] in rootCRLs.isRevoked($0, by: $1) }, onReject: { [logger] reason in
            logger.notice("refused TLS client certificate", metadata: ["reason": "\(reason)"])
        }, limits: configuration.listenerLimits, onLimitReached: { [logger] limit, refused in
            logger.warning("connection limit reached: refusing new connections",
                           metadata: ["listener": "grpc", "max_connections": "\(limit)", "refused": "\(refused)"])
        })
        // The listener serves what it loaded: the fleet report names that certificate.
        state.update {
            $0.servingSerial = $0.serial
            $0.servingNotAfter = $0.notAfter
        }
        let serve: @Sendable () throws -> Certificate = { [state] in
            let served = try tls.reload()
            state.update {
                $0.servingSerial = served.serialHex
                $0.servingNotAfter = served.notValidAfter
            }
            return served
        }
        // A hook still running must neither delay shutdown nor outlive the agent.
        defer { hooks.stop() }
        var services: [any Service] = []
        if let listen = configuration.listen {
            services.append(try LocalStatusServer(tls: tls, address: listen, state: state, revocations: revocations, rootCRLs: rootCRLs,
                                                  logger: logger, onListening: onListening))
        }
        services += [
            AgentLoop(name: "renewal") { [keeper] in try await keeper.rotateForever(reloadListener: serve) },
            AgentLoop(name: "revocation stream") { [revocations, keeper] in try await revocations.watchForever(schedule: keeper.schedule) },
            AgentLoop(name: "CRL refresh") { [revocations] in try await revocations.refreshCRLForever() },
            AgentLoop(name: "trust bundle stream") { [trust, keeper] in try await trust.watchForever(schedule: keeper.schedule) },
            AgentLoop(name: "trust bundle updates") { [trust] in try await trust.applyForever(reloadListener: { _ = try serve() }) },
            AgentLoop(name: "fleet report") { [fleet] in try await fleet.reportForever() },
        ]
        if let workloadServer {
            // Served before the agent announces its listener: callers from then on get the identity.
            workloadAPI.refresh(isRevoked: { revocations.isRevoked($0) })
            services += [workloadServer, AgentLoop(name: "workload API") { [workloadAPI, revocations] in
                try await workloadAPI.followIdentity(isRevoked: { revocations.isRevoked($0) })
            }]
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            // The agent's own shutdown (signal, end of quickstart) is passed on to its parts; a
            // shutdown that came while enrolling is remembered by the group and delivered at start.
            tasks.addTask { [logger, hooks] in
                await untilShutdown()
                guard !Task.isCancelled else { return }
                logger.info("shutting down")
                hooks.stop()
                await group.triggerGracefulShutdown()
            }
            defer { tasks.cancelAll() }
            try await group.run()
        }
        logger.info("stopped")
    }

    /// Sets the time-dependent gauges; called before each metrics scrape.
    public func refreshGauges() {
        keeper.refreshGauges()
        DerivedFiles.refreshGauge(now: Date())
    }
}

public struct AgentError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
