import GRPCCore
import GRPCNIOTransportHTTP2
import X509

/// For any Swift gRPC server on `RotatingServerTLS`: requires a peer SPIFFE ID
/// (from the verified client certificate) that `isAllowed` accepts, and makes
/// it available to handlers as `SPIFFEIdentityInterceptor.current`.
public struct SPIFFEIdentityInterceptor: ServerInterceptor {
    @TaskLocal public static var current: String?

    let isAllowed: @Sendable (String) -> Bool

    public init(isAllowed: @escaping @Sendable (String) -> Bool = { _ in true }) {
        self.isAllowed = isAllowed
    }

    /// The verified peer certificate of an RPC on the Posix HTTP/2 transport.
    public static func peerCertificate(_ context: ServerContext) -> Certificate? {
        (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificate
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard let id = Self.peerCertificate(context)?.spiffeID else {
            throw RPCError(code: .unauthenticated, message: "a client certificate with a SPIFFE ID is required")
        }
        guard isAllowed(id) else {
            throw RPCError(code: .permissionDenied, message: "\(id) may not call \(context.descriptor.fullyQualifiedMethod)")
        }
        return try await Self.$current.withValue(id) { try await next(request, context) }
    }
}
