import GRPCCore
import GRPCNIOTransportHTTP2
import X509

/// For any Swift gRPC server on `RotatingServerTLS`: requires a peer SPIFFE ID
/// (from the verified client certificate) that `isAllowed` accepts, and makes
/// it available to handlers as `SPIFFEIdentityInterceptor.current`.
public struct SPIFFEIdentityInterceptor: ServerInterceptor {
    @TaskLocal public static var current: String?

    let isAllowed: @Sendable (String) -> Bool
    let isRevoked: @Sendable (String) -> Bool

    /// - Parameter isRevoked: checked per RPC too, so a connection opened before a revocation stops working.
    public init(isAllowed: @escaping @Sendable (String) -> Bool = { _ in true },
                isRevoked: @escaping @Sendable (String) -> Bool = { _ in false }) {
        self.isAllowed = isAllowed
        self.isRevoked = isRevoked
    }

    /// The verified peer certificate of an RPC on the Posix HTTP/2 transport.
    public static func peerCertificate(_ context: ServerContext) -> Certificate? {
        (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificate
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard let certificate = Self.peerCertificate(context), let id = certificate.spiffeID else {
            throw RPCError(code: .unauthenticated, message: "a client certificate with a SPIFFE ID is required")
        }
        guard !isRevoked(certificate.serialHex) else {
            throw RPCError(code: .failedPrecondition, message: "client certificate \(certificate.serialHex) is revoked")
        }
        guard isAllowed(id) else {
            throw RPCError(code: .permissionDenied, message: "\(id) may not call \(context.descriptor.fullyQualifiedMethod)")
        }
        return try await Self.$current.withValue(id) { try await next(request, context) }
    }
}
