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
    let isRevokedByIssuer: PeerCertificateVerifier.RevokedByIssuer

    /// - Parameters:
    ///   - isRevoked: checked per RPC too, so a connection opened before a revocation stops working.
    ///   - isRevokedByIssuer: asked per RPC about the validated chain too, as the handshake asks it.
    public init(isAllowed: @escaping @Sendable (String) -> Bool = { _ in true },
                isRevoked: @escaping @Sendable (String) -> Bool = { _ in false },
                isRevokedByIssuer: @escaping PeerCertificateVerifier.RevokedByIssuer = { _, _ in false }) {
        self.isAllowed = isAllowed
        self.isRevoked = isRevoked
        self.isRevokedByIssuer = isRevokedByIssuer
    }

    /// The verified peer certificate of an RPC on the Posix HTTP/2 transport.
    public static func peerCertificate(_ context: ServerContext) -> Certificate? {
        (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificate
    }

    /// Why an RPC's validated client chain is refused now although its handshake passed: a
    /// certificate of it revoked by its issuer since (an intermediate its root revoked while the
    /// connection stayed open); nil when there is none.
    public static func chainRevocation(_ context: ServerContext, _ isRevokedByIssuer: PeerCertificateVerifier.RevokedByIssuer) -> String? {
        guard let chain = (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificateChain,
              let reason = PeerCertificateVerifier.revocation(in: Array(chain), isRevokedByIssuer) else { return nil }
        return "client certificate \(chain.leaf.serialHex) is refused: \(reason)"
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
        if let refusal = Self.chainRevocation(context, isRevokedByIssuer) {
            throw RPCError(code: .failedPrecondition, message: refusal)
        }
        guard isAllowed(id) else {
            throw RPCError(code: .permissionDenied, message: "\(id) may not call \(context.descriptor.fullyQualifiedMethod)")
        }
        return try await Self.$current.withValue(id) { try await next(request, context) }
    }
}
