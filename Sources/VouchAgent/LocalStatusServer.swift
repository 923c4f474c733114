import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle
import VouchAPI
import VouchHTTP
import VouchTLS

/// The agent's local mTLS gRPC server (status and health), serving whatever certificate
/// `tls` holds now: a rotation reloads it for new handshakes while open connections go on.
struct LocalStatusServer: Service {
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let tls: RotatingServerTLS
    let address: HostPort
    let logger: Logger
    /// Told the bound address.
    let onListening: @Sendable (HostPort) -> Void

    init(tls: RotatingServerTLS, address: HostPort, state: AgentState, revocations: RevocationFollower, rootCRLs: RootCRLRevocations,
         logger: Logger, onListening: @escaping @Sendable (HostPort) -> Void) throws {
        // Both lists are asked per call as well, so a connection opened before a revocation stops working.
        self.server = GRPCServer(transport: try tls.makeTransport(host: address.host, port: address.port),
                                 services: [AgentStatusService(state: state), HealthService(services: ["vouch.v1.Agent"])],
                                 interceptors: [SPIFFEIdentityInterceptor(isRevoked: { [revocations] in revocations.isRevoked($0) },
                                                                          isRevokedByIssuer: { [rootCRLs] in rootCRLs.isRevoked($0, by: $1) })])
        self.tls = tls
        self.address = address
        self.logger = logger
        self.onListening = onListening
    }

    func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await server.serve() }
            group.addTask {
                // The server is told to stop only once it is listening: stopping it while it binds
                // (a Ctrl-C right after enrollment) made the transport fail or crash. A failed bind
                // is thrown by serve() itself.
                if let bound = try? await server.listeningAddress {
                    let port = bound.ipv4?.port ?? bound.ipv6?.port ?? address.port
                    let listening = HostPort(host: address.host, port: port)
                    logger.info("local server listening", metadata: ["address": "\(listening)"])
                    onListening(listening)
                }
                await untilShutdown()
                tls.handler.stopAccepting()
                server.beginGracefulShutdown()
            }
        }
    }
}
