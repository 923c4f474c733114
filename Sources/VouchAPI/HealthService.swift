import GRPCCore
import Synchronization
import VouchCrypto

/// grpc.health.v1.Health: SERVING for the server as a whole ("") and for each
/// registered service name until shutdown begins, and while the PKCS#11 token the CA's keys
/// are in (if any) can sign: a failed token makes everything NOT_SERVING until it is back.
public final class HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol, Sendable {
    private let services: Set<String>
    private let serving = Mutex(true)
    private let token: PKCS11Token?

    public init(services: [String], token: PKCS11Token? = nil) {
        self.services = Set(services + [""])
        self.token = token
    }

    /// Marks everything NOT_SERVING (on graceful shutdown, so load balancers drain first).
    public func markNotServing() { serving.withLock { $0 = false } }

    private func status(_ service: String) -> Grpc_Health_V1_HealthCheckResponse.ServingStatus? {
        guard services.contains(service) else { return nil }
        let tokenWorks = token.map { $0.status == .ok } ?? true
        return serving.withLock { $0 } && tokenWorks ? .serving : .notServing
    }

    public func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        guard let status = status(request.service) else {
            throw RPCError(code: .notFound, message: "unknown service \(request.service)")
        }
        var response = Grpc_Health_V1_HealthCheckResponse()
        response.status = status
        return response
    }

    public func watch(request: Grpc_Health_V1_HealthCheckRequest, response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
                      context: ServerContext) async throws {
        var last: Grpc_Health_V1_HealthCheckResponse.ServingStatus?
        while !Task.isCancelled {
            let current = status(request.service) ?? .serviceUnknown
            if current != last {
                var message = Grpc_Health_V1_HealthCheckResponse()
                message.status = current
                try await response.write(message)
                last = current
            }
            try await Task.sleep(for: .seconds(1))
        }
    }
}
