import ServiceLifecycle
import VouchHTTP

/// One of the agent's endless loops (renewal, revocation stream, CRL refresh) as a service:
/// the loop sleeps between rounds, so on graceful shutdown it is cancelled rather than awaited.
struct AgentLoop: Service {
    let name: String
    let body: @Sendable () async throws -> Void

    func run() async throws {
        do {
            try await cancelOnShutdown(body)
        } catch is CancellationError {}
    }
}
