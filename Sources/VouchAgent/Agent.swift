import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Metrics
import ServiceLifecycle
import VouchAPI
import VouchCrypto
import VouchTLS
import VouchHTTP

/// `vouch agent` as a ServiceLifecycle service: obtains an identity, keeps it
/// fresh on disk, and serves its local mTLS status API with hot reload.
public final class Agent: Service, Sendable {
    public let configuration: AgentConfiguration
    public let state = AgentState()
    let files: IdentityFiles
    let trust: AgentTrust
    let logger: Logger
    let client: CertificateAuthorityClient
    let schedule: RenewalSchedule
    let hooks: RotationHooks
    /// Told about each new certificate (first one included), e.g. for quickstart output.
    let onIdentity: @Sendable (AgentSnapshot) -> Void
    /// Told the bound address of the local server.
    let onListening: @Sendable (HostPort) -> Void
    public let revocations: RevocationFollower
    let rotationsCounter = Counter(label: "vouch_agent_rotations_total")
    let failuresCounter = Counter(label: "vouch_agent_renewal_failures_total")
    let expiryGauge = Gauge(label: "vouch_agent_certificate_expires_in_seconds")
    let notAfterGauge = Gauge(label: "vouch_agent_certificate_not_after_timestamp_seconds")

    public init(configuration: AgentConfiguration, logger: Logger,
                onIdentity: @escaping @Sendable (AgentSnapshot) -> Void = { _ in },
                onListening: @escaping @Sendable (HostPort) -> Void = { _ in }) {
        self.configuration = configuration
        self.files = IdentityFiles(directory: configuration.outDirectory)
        self.trust = AgentTrust(configuration: configuration, files: files)
        self.logger = logger
        let server = CAServerIdentity(configured: configuration.caServerID, files: files)
        self.client = CertificateAuthorityClient(address: configuration.caAddress, bundlePath: configuration.caBundlePath,
                                                 timeout: configuration.rpcTimeout, server: server)
        self.schedule = RenewalSchedule(renewFraction: configuration.renewFraction, jitterFraction: configuration.jitterFraction,
                                        minimumBackoff: configuration.minimumBackoff, maximumBackoff: configuration.maximumBackoff)
        self.hooks = RotationHooks(command: configuration.execCommand, signal: configuration.signal,
                                   pidFile: configuration.pidFile, processName: configuration.signalProcessName,
                                   timeout: configuration.hookTimeout, logger: logger)
        self.onIdentity = onIdentity
        self.onListening = onListening
        self.revocations = RevocationFollower(files: files, address: configuration.caAddress, bundlePath: configuration.caBundlePath,
                                              server: server, refreshInterval: configuration.crlRefreshInterval, rpcTimeout: configuration.rpcTimeout,
                                              logger: logger)
    }

    public func run() async throws {
        try await obtainInitialIdentity()
        await revocations.loadSavedCRL()
        let tls = try RotatingServerTLS(files: files, isRevoked: { [revocations] in revocations.isRevoked($0) }, onReject: { [logger] reason in
            logger.notice("refused TLS client certificate", metadata: ["reason": "\(reason)"])
        }, limits: configuration.listenerLimits, onLimitReached: { [logger] limit, refused in
            logger.warning("connection limit reached: refusing new connections",
                           metadata: ["listener": "grpc", "max_connections": "\(limit)", "refused": "\(refused)"])
        })
        // A hook still running must neither delay shutdown nor outlive the agent.
        defer { hooks.stop() }
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                if let listen = configuration.listen {
                    let server = try makeServer(tls: tls, address: listen)
                    group.addTask { try await server.serve() }
                    group.addTask { [self] in
                        // The server is told to stop only once it is listening: stopping it while it
                        // binds (a Ctrl-C right after enrollment) made the transport fail or crash.
                        // A failed bind is thrown by serve() itself.
                        if let bound = try? await server.listeningAddress {
                            let port = bound.ipv4?.port ?? bound.ipv6?.port ?? listen.port
                            let address = HostPort(host: listen.host, port: port)
                            logger.info("local server listening", metadata: ["address": "\(address)"])
                            onListening(address)
                        }
                        await untilShutdown()
                        tls.handler.stopAccepting()
                        server.beginGracefulShutdown()
                    }
                }
                // These loops sleep between rounds; shutdown must not wait for them.
                for loop in [{ try await self.rotateForever(tls: tls) },
                             { try await self.revocations.watchForever(schedule: self.schedule) },
                             { try await self.revocations.refreshCRLForever() }] as [@Sendable () async throws -> Void] {
                    group.addTask {
                        do {
                            try await cancelOnShutdown { try await loop() }
                        } catch is CancellationError {}
                    }
                }
            }
        } onGracefulShutdown: { [logger, hooks] in
            logger.info("shutting down")
            hooks.stop()
        }
        logger.info("stopped")
    }

    private func makeServer(tls: RotatingServerTLS, address: HostPort) throws -> GRPCServer<HTTP2ServerTransport.Posix> {
        GRPCServer(transport: try tls.makeTransport(host: address.host, port: address.port),
                   services: [AgentStatusService(state: state), HealthService(services: ["vouch.v1.Agent"])],
                   interceptors: [SPIFFEIdentityInterceptor(isRevoked: { [revocations] in revocations.isRevoked($0) })])
    }

    // MARK: Identity

    /// Reuses the identity on disk if it is valid and verifies against the agent's trust,
    /// else says why and enrolls with the token.
    private func obtainInitialIdentity() async throws {
        var info = stat()
        // Anything but a regular svid.pem is left to the output directory check before enrolling.
        if lstat(files.certificate, &info) == 0, info.st_mode & S_IFMT == S_IFREG {
            do {
                let identity = try files.load()
                if identity.leaf.notAfter > Date() {
                    try await trust.verifyOnDisk(identity)
                    logger.info("using identity on disk", metadata: ["serial": "\(identity.leaf.serialHex)",
                                                                    "not_after": "\(identity.leaf.notAfter)"])
                    record(identity.leaf, rotated: false)
                    return
                }
                logger.error("certificate on disk has expired", metadata: ["serial": "\(identity.leaf.serialHex)",
                                                                           "not_after": "\(identity.leaf.notAfter)"])
            } catch {
                logger.error("not using the identity on disk; enrolling with the token", metadata: ["reason": "\(error)"])
            }
        }
        try await enrollWithToken()
    }

    private func enrollWithToken() async throws {
        guard let tokenPath = configuration.tokenFilePath else {
            throw AgentError("no valid certificate in \(files.directory) and no --token-file: create a token with "
                + "`vouch token create --spiffe-id ID` and pass it with --token-file")
        }
        guard let token = try? String(contentsOfFile: tokenPath, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty else {
            throw AgentError("cannot read a token from \(tokenPath)")
        }
        // Spend the token only if the answer can be written.
        try OutputDirectory(files: files).prepare()
        _ = try trust.configuredRoots()
        let key = try PrivateKey(generating: configuration.keyAlgorithm)
        let answer: CertificateAuthorityClient.Answer
        do {
            answer = try await client.enroll(token: token, key: key, ttl: configuration.certificateTTL)
        } catch let error as RPCError where error.code == .unauthenticated {
            throw AgentError("the CA refused the token in \(tokenPath) (\(error.message)): create a new one with "
                + "`vouch token create --spiffe-id ID`")
        } catch let rejected as IdentityRejected {
            throw AgentError("rejected the CA's enrollment answer: \(rejected)")
        }
        let identity: VerifiedIdentity, roots: [X509Certificate]
        do {
            (identity, roots) = try await trust.verifyEnrollment(answer, key: key)
        } catch let rejected as IdentityRejected {
            throw AgentError("rejected the CA's enrollment answer: \(rejected)")
        }
        noteUntrustedRoots(answer, trusted: roots)
        try IdentityWriter(files: files).write(identity, key: key, bundlePEM: pemBundle(roots))
        logger.info("enrolled", metadata: ["spiffe_id": "\(identity.leaf.spiffeID ?? "")", "serial": "\(identity.leaf.serialHex)",
                                           "not_after": "\(identity.leaf.notAfter)"])
        record(identity.leaf, rotated: false)
    }

    /// Roots in an answer that the agent does not already trust are never written.
    private func noteUntrustedRoots(_ answer: CertificateAuthorityClient.Answer, trusted: [X509Certificate]) {
        let count = trust.untrustedRootCount(answer, trusted: trusted)
        if count > 0 {
            logger.notice("ignoring roots in the CA's answer that the agent does not already trust", metadata: ["count": "\(count)"])
        }
    }

    /// Sets the time-dependent gauges; called before each metrics scrape.
    public func refreshGauges() {
        guard let notAfter = state.current.notAfter else { return }
        expiryGauge.record(notAfter.timeIntervalSinceNow)
        notAfterGauge.record(notAfter.timeIntervalSince1970)
    }

    private func record(_ leaf: X509Certificate, rotated: Bool) {
        if rotated { rotationsCounter.increment() }
        state.update { snapshot in
            snapshot.spiffeID = leaf.spiffeID ?? ""
            snapshot.serial = leaf.serialHex
            snapshot.notBefore = leaf.notBefore
            snapshot.notAfter = leaf.notAfter
            if rotated {
                snapshot.rotations += 1
                snapshot.lastRotation = Date()
            }
            snapshot.lastError = ""
        }
        refreshGauges()
        onIdentity(state.current)
    }

    // MARK: Rotation

    private func rotateForever(tls: RotatingServerTLS) async throws {
        var failures = 0
        var retryAt: Date?
        while !Task.isCancelled {
            let current = state.current
            guard let notBefore = current.notBefore, let notAfter = current.notAfter else { return }
            let due = retryAt ?? schedule.renewalTime(notBefore: notBefore, notAfter: notAfter)
            state.update { $0.nextRenewal = due }
            try await sleep(until: due)

            // An expired or revoked certificate cannot be renewed: only a new token helps. Revoked
            // means listed in a verified CRL, never a mere streamed event.
            let dead = Date() >= notAfter ? "expired at \(notAfter)" : (revocations.isRevoked(current.serial) ? "was revoked" : nil)
            if let dead {
                if dead == "was revoked" {
                    logger.notice("own certificate is listed in the CA's signed CRL", metadata: [
                        "serial": "\(current.serial)", "crl_number": "\(revocations.heldNumber ?? -1)"])
                }
                try await waitForNewToken(tls: tls, because: dead)
                failures = 0
                retryAt = nil
                continue
            }
            do {
                let key = try PrivateKey(generating: configuration.keyAlgorithm)
                let held = try files.load().leaf
                let answer = try await client.renew(current: files, newKey: key, ttl: configuration.certificateTTL)
                let identity = try await trust.verifyRenewal(answer, key: key, current: held)
                noteUntrustedRoots(answer, trusted: try trust.heldRoots())
                try IdentityWriter(files: files).write(identity, key: key, bundlePEM: nil)
                let served = try tls.reload()
                logger.info("rotated", metadata: ["from": "\(current.serial)", "serial": "\(served.serialHex)",
                                                  "not_after": "\(served.notAfter)"])
                failures = 0
                retryAt = nil
                record(served, rotated: true)
                hooks.run(serial: served.serialHex, directory: files.directory)
            } catch let error as RPCError where error.code == .failedPrecondition && error.message.contains("is revoked") {
                // The CA itself says this certificate is revoked: that is confirmation enough.
                logger.notice("the CA refused to renew: own certificate revoked", metadata: ["error": "\(error.message)"])
                try await waitForNewToken(tls: tls, because: "was revoked")
                failures = 0
                retryAt = nil
            } catch let error where isShutdown(error) {
                throw CancellationError()
            } catch {
                failures += 1
                failuresCounter.increment()
                let message = describe(error)
                state.update {
                    $0.failures += 1
                    $0.lastError = message
                    $0.lastErrorAt = Date()
                }
                let delay = schedule.backoff(failures: failures)
                retryAt = Date().addingTimeInterval(delay)
                let what = error is IdentityRejected ? "rejected the CA's answer; keeping the current certificate"
                    : "renewal failed; keeping the current certificate"
                logger.warning("\(what)", metadata: [
                    "error": "\(message)", "attempt": "\(failures)", "serial": "\(current.serial)",
                    "retry_in": "\(String(format: "%.1f", delay))s", "not_after": "\(notAfter)"])
            }
        }
    }

    /// The certificate expired or was revoked, so the CA will not renew it: say what the operator
    /// must do, then wait (without calling the CA) for a new token in the token file.
    private func waitForNewToken(tls: RotatingServerTLS, because reason: String) async throws {
        let instruction = "certificate \(state.current.serial) \(reason) and the CA will not renew it: "
            + "create a new token with `vouch token create --spiffe-id \(state.current.spiffeID)` and write it to "
            + (configuration.tokenFilePath ?? "a file passed as --token-file")
        state.update {
            $0.lastError = instruction
            $0.lastErrorAt = Date()
        }
        logger.error("\(instruction)")
        guard let tokenPath = configuration.tokenFilePath else { throw AgentError(instruction) }
        let seen = Self.modificationDate(tokenPath)
        while Self.modificationDate(tokenPath) == seen {
            try await Task.sleep(for: .seconds(2))
        }
        try await enrollWithToken()
        try tls.reload()
    }

    static func modificationDate(_ path: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }

    private func sleep(until date: Date) async throws {
        let interval = date.timeIntervalSinceNow
        if interval > 0 { try await Task.sleep(for: .milliseconds(Int64(interval * 1000))) }
    }
}

public struct AgentError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
