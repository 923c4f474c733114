import Foundation
import GRPCCore
import Logging
import VouchAuthority
import VouchTLS

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
        try Self.checkChainStanding(context, issuers: authority.issuerSet)
        try Self.checkExpiredMayOnlyRenew(context, now: authority.now)
        // SimpleServiceProtocol handlers do not see metadata, so the bearer token travels as a task local.
        var response = try await BearerToken.$current.withValue(BearerToken.from(request.metadata)) {
            try await RPCCaller.$current.withValue(caller) {
                try await next(request, context)
            }
        }
        Self.advertiseRenewAfterExpiry(authority.policy.renewAfterExpiry, method: context.descriptor.fullyQualifiedMethod, in: &response)
        return response
    }
}

extension AuthenticationInterceptor {
    /// Response metadata of Enroll and Renew with the CA's `renew_after_expiry` in seconds, when on:
    /// an agent whose certificate expires keeps trying to renew it for that long (instead of waiting
    /// for a new token at once). Only a hint: the CA decides on each renewal.
    public static let renewAfterExpiryHeader = "vouch-renew-after-expiry"

    static func advertiseRenewAfterExpiry<Output>(_ window: TimeInterval, method: String, in response: inout StreamingServerResponse<Output>) {
        guard window > 0, method == expiredCertificateMethod || method == "vouch.v1.CertificateAuthority/Enroll",
              case .success = response.accepted else { return }
        response.metadata.replaceOrAddString(String(Int64(window)), forKey: renewAfterExpiryHeader)
    }

    /// Refuses a caller whose validated chain runs through an intermediate its root revoked since
    /// the connection was made: the issuer rows the handshake asks, followed as they are.
    static func checkChainStanding(_ context: ServerContext, issuers: IssuerSet) throws {
        let refusal = SPIFFEIdentityInterceptor.chainRevocation(context) { certificate, issuer in
            issuers.isRevokedIssuer(serial: certificate.serialHex, issuerDER: (try? issuer.der) ?? [])
        }
        if let refusal { throw AuthorityError(.failedPrecondition, refusal, reason: .certificateRevoked) }
    }

    /// The method an expired client certificate may call (`renew_after_expiry`).
    static let expiredCertificateMethod = "vouch.v1.CertificateAuthority/Renew"

    /// A client certificate the handshake accepted although expired (within `renew_after_expiry`)
    /// may renew itself and do nothing else.
    static func checkExpiredMayOnlyRenew(_ context: ServerContext, now: Date) throws {
        guard let certificate = SPIFFEIdentityInterceptor.peerCertificate(context),
              PeerCertificateVerifier.isExpired(certificate, now: now),
              context.descriptor.fullyQualifiedMethod != expiredCertificateMethod else { return }
        throw AuthorityError(.failedPrecondition, "client certificate \(certificate.serialHex) expired at "
            + "\(certificate.notValidAfter.formatted(.iso8601)); an expired certificate may only renew", reason: .certificateExpired)
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
