import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOSSL
import ServiceLifecycle
import VouchAuthority
import VouchHTTP
import VouchConnectionLimits
import VouchCrypto
import VouchTLS

/// The CA's gRPC listener as a ServiceLifecycle service: TLS 1.3 only, client
/// certificates optional and verified, graceful shutdown on SIGTERM/SIGINT. Its TLS is the
/// agent's (`RotatingServerTLS`), so `reload()` can swap in a new server certificate and trust.
public final class CAServer: Service, Sendable {
    let authority: CertificateAuthority
    let files: CAFiles
    let address: HostPort
    let logger: Logger
    /// Signs audit checkpoints for Admin.GetAuditCheckpoint, if given.
    let auditCheckpoints: AuditCheckpointer?
    /// Handshake and idle timeouts and the cap on open connections.
    let limits: ListenerLimits
    /// Called once with the bound address (useful with port 0).
    let onListening: @Sendable (HostPort) -> Void
    /// The listener's own renewed certificate; nil serves server.pem (tests on a bare directory).
    let listenerIdentity: ServerListenerIdentity?
    /// The PKCS#11 token the CA's keys are in, if any: gRPC health is NOT_SERVING while it fails.
    let token: PKCS11Token?

    /// Largest request the transport reads. CSRs are capped far lower (16 KiB) by the authority,
    /// which answers with a clear invalidArgument; beyond this the transport resets the stream.
    public static let maxRequestBytes = 1024 * 1024

    /// Streams one connection may hold open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): each
    /// WatchTrustBundle or WatchRevocations stream holds memory for as long as it lasts, so one
    /// client cannot open hundreds; a further stream is refused (REFUSED_STREAM).
    public static let maxConcurrentStreams = 100

    public init(authority: CertificateAuthority, files: CAFiles, address: HostPort, logger: Logger,
                auditCheckpoints: AuditCheckpointer? = nil,
                limits: ListenerLimits = ListenerLimits(), listenerIdentity: ServerListenerIdentity? = nil,
                token: PKCS11Token? = nil, onListening: @escaping @Sendable (HostPort) -> Void = { _ in }) {
        self.listenerIdentity = listenerIdentity
        self.token = token
        self.limits = limits
        self.authority = authority
        self.files = files
        self.address = address
        self.logger = logger
        self.auditCheckpoints = auditCheckpoints
        self.onListening = onListening
    }

    public func run() async throws {
        let logger = self.logger
        // Audit rows of refused requests and refused handshakes share budgets, so a flood of either
        // is bounded once; refused handshakes are anonymous.
        let refusalAudit = RefusalAuditLimits()
        // Handshake refusals come from NIO's event loop; their audit rows are written by a task of
        // this service (bounded: a flood drops the oldest, which the budget would drop anyway).
        let (refusedHandshakes, reportRefusedHandshake) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(64))
        // Client certificates optional: enrollment comes without one.
        let tls = try RotatingServerTLS(
            requireClientCertificate: false,
            isRevoked: { [revocations = authority.revocations] in revocations.isRevoked(serial: $0) },
            // An intermediate its root revoked is refused even when the client presents it (from the issuer rows the follower reloads).
            isRevokedByIssuer: { [authority] certificate, issuer in authority.issuerSet.isRevokedIssuer(serial: certificate.serialHex, issuerDER: (try? issuer.der) ?? []) },
            onReject: { [handshakeLog = RateLimitedLog(burst: 50, perSecond: 5), auditLimit = refusalAudit.anonymous] reason in
                handshakeLog.log(logger, .notice, "refused TLS client certificate", metadata: ["reason": "\(reason)"])
                // A revoked or foreign certificate presented to the CA is worth an audit row too.
                guard let suppressed = auditLimit.admit() else { return }
                let note = suppressed > 0 ? " (\(suppressed) earlier refusals not recorded)" : ""
                reportRefusedHandshake.yield(reason + note)
            },
            limits: limits, onLimitReached: { limit, refused in
                logger.warning("connection limit reached: refusing new connections",
                               metadata: ["listener": "grpc", "max_connections": "\(limit)", "refused": "\(refused)"])
            },
            // renew_after_expiry: an expired client certificate passes, for Renew only (AuthenticationInterceptor).
            expiredGrace: authority.policy.renewAfterExpiry,
            load: { [files, authority, listenerIdentity] in
                guard let listenerIdentity else { return try authority.listenerTLSMaterial(files: files) }
                return authority.listenerTLSMaterial(identity: listenerIdentity)
            })
        if let listenerIdentity {
            listenerIdentity.onRenewal { [logger] in
                let leaf = try tls.reload()
                logger.info("listener reloaded", metadata: ["serial": "\(leaf.serialHex)"])
            }
            // A renewal between the first load and this registration is picked up now.
            try tls.reload()
        }
        let loadedGeneration = authority.issuerSet.generation
        let transport = try tls.makeTransport(host: address.host, port: address.port, maxRequestBytes: Self.maxRequestBytes,
                                              maxConcurrentStreams: Self.maxConcurrentStreams)
        let health = HealthService(services: ["vouch.v1.CertificateAuthority", "vouch.v1.Admin"], token: token)
        let server = GRPCServer(
            transport: transport,
            services: [CertificateAuthorityService(authority: authority), AdminService(authority: authority, auditCheckpoints: auditCheckpoints), health],
            interceptors: [MetricsInterceptor(), ErrorReportingInterceptor(authority: authority, logger: logger, auditLimits: refusalAudit),
                           AuthenticationInterceptor(authority: authority),
                           AuthorizationInterceptor(authority: authority, logger: logger)])

        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await server.serve()
                reportRefusedHandshake.finish()
            }
            group.addTask { [authority] in
                // The pools follow the issuers: a leaf of any issuer still trusted passes the handshake.
                var held = loadedGeneration
                for await set in authority.issuerUpdates() where set.generation != held {
                    held = set.generation
                    do {
                        try tls.reload()
                        logger.info("listener trusts the issuers of generation \(set.generation)")
                    } catch {
                        logger.error("cannot reload the listener's trust", metadata: ["reason": "\(error)"])
                    }
                }
            }
            group.addTask { [authority] in
                for await reason in refusedHandshakes {
                    try? await authority.recordRefusal(method: "TLS handshake", code: "unauthenticated", reason: reason,
                                                       caller: Caller(credential: .none, peer: "tls"))
                }
            }
            group.addTask { [address] in
                // The server is told to stop only once it is listening: stopping a transport while it
                // binds made it fail or crash. A failed bind is thrown by serve() itself.
                if let bound = try? await server.listeningAddress {
                    let port = bound.ipv4?.port ?? bound.ipv6?.port ?? address.port
                    let actual = HostPort(host: address.host, port: port)
                    logger.info("listening", metadata: ["address": "\(actual)", "trust_domain": "\(self.authority.policy.trustDomain)"])
                    self.onListening(actual)
                }
                await untilShutdown()
                logger.info("shutting down: draining open RPCs")
                health.markNotServing()
                // Watch streams never end on their own; finish them so draining completes.
                self.authority.revocations.finishWatchers()
                self.authority.finishIssuerUpdates()
                tls.handler.stopAccepting()
                server.beginGracefulShutdown()
            }
        }
        logger.info("stopped")
    }
}
