import Foundation
import GRPCCore
import Logging
import VouchWorkloadAPI

/// The X.509 methods of the SPIFFE Workload API. Each stream gets the complete state at once and
/// again at each change; the JWT methods are not registered, so the server answers them
/// UNIMPLEMENTED, as the standard asks of an agent without JWT-SVIDs.
struct WorkloadAPIService: SpiffeWorkloadAPI.SimpleServiceProtocol {
    let board: WorkloadAPIBoard
    let logger: Logger

    func fetchX509SVID(request: X509SVIDRequest, response: RPCWriter<X509SVIDResponse>, context: ServerContext) async throws {
        try await follow(response, what: "FetchX509SVID") { material in
            // A new certificate, or new roots: both are in each message.
            [material.chainDER, material.bundleDER]
        } message: { $0.svidResponse }
    }

    func fetchX509Bundles(request: X509BundlesRequest, response: RPCWriter<X509BundlesResponse>, context: ServerContext) async throws {
        try await follow(response, what: "FetchX509Bundles") { [$0.bundleDER] } message: { $0.bundlesResponse }
    }

    /// Writes a message for the first material and for each one whose `content` differs from the
    /// last sent; ends the stream as the board's phase or the agent's shutdown says.
    private func follow<Message: Sendable>(_ response: RPCWriter<Message>, what: String,
                                           content: (WorkloadAPIMaterial) -> [Data],
                                           message: (WorkloadAPIMaterial) -> Message) async throws {
        var sent: [Data]?
        for await phase in board.updates() {
            switch phase {
            case .starting:
                throw RPCError(code: .unavailable, message: "the agent has no identity yet")
            case .withdrawn(let reason):
                throw RPCError(code: .permissionDenied, message: reason)
            case .serving(let material):
                let now = content(material)
                guard now != sent else { continue }
                try await response.write(message(material))
                sent = now
                logger.debug("workload API: sent", metadata: ["rpc": "\(what)", "serial": "\(material.serial)"])
            }
        }
        throw RPCError(code: .unavailable, message: "the agent is shutting down")
    }
}

/// Refuses every request without the `workload.spiffe.io: true` metadata, as the SPIFFE Workload
/// Endpoint standard requires: it shows that a workload, not a browser or a confused proxy made
/// to forward a request, is calling.
struct WorkloadAPIHeaderCheck: ServerInterceptor {
    static let header = "workload.spiffe.io"

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard request.metadata[stringValues: Self.header].contains("true") else {
            throw RPCError(code: .invalidArgument, message: "security header missing from request")
        }
        return try await next(request, context)
    }
}
