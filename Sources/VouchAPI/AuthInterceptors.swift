import GRPCCore
import Logging
import VouchAuthority

/// Turns the transport's peer certificate into a `Caller` for the rest of the
/// RPC, and refuses certificates revoked after their connection was opened.
public struct AuthenticationInterceptor: ServerInterceptor {
    let authority: CertificateAuthority

    public init(authority: CertificateAuthority) { self.authority = authority }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let caller = RPCCaller.resolve(context)
        try authority.checkStanding(caller)
        // SimpleServiceProtocol handlers do not see metadata, so the bearer token travels as a task local.
        return try await BearerToken.$current.withValue(BearerToken.from(request.metadata)) {
            try await RPCCaller.$current.withValue(caller) {
                try await next(request, context)
            }
        }
    }
}

/// Enforces `MethodAccess` rules per method.
public struct AuthorizationInterceptor: ServerInterceptor {
    let authority: CertificateAuthority
    let logger: Logger

    public init(authority: CertificateAuthority, logger: Logger) {
        self.authority = authority
        self.logger = logger
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let caller = RPCCaller.of(context)
        let method = context.descriptor.fullyQualifiedMethod
        let refusal: RPCError?
        switch MethodAccess.rule(service: context.descriptor.service.fullyQualifiedService, method: context.descriptor.method) {
        case .anyClient?:
            refusal = nil
        case .certificate?:
            refusal = caller.spiffeID == nil ? RPCError(code: .unauthenticated, message: "\(method) needs a client certificate") : nil
        case .admin?:
            if caller.spiffeID == nil {
                refusal = RPCError(code: .unauthenticated, message: "\(method) needs an admin client certificate")
            } else if !authority.isAdmin(caller) {
                refusal = RPCError(code: .permissionDenied, message: "\(caller.auditName) is not an admin")
            } else {
                refusal = nil
            }
        case nil:
            refusal = RPCError(code: .permissionDenied, message: "\(method) is not allowed")
        }
        // ErrorReportingInterceptor, further out, maps, logs and audits the refusal.
        if let refusal { throw refusal }
        return try await next(request, context)
    }
}
