import Foundation
import GRPCCore
import Logging
import VouchAuthority

/// Reports every refused RPC once, at the edge: a log line (method, caller, peer, status,
/// reason) and, for the security-relevant statuses, an audit row `refused`. Both are rate
/// limited, so a flood of bad tokens cannot fill the disk; what was dropped is counted in
/// the next line or row. Never logs a secret: the reason is the authority's own message.
public struct RefusalInterceptor: ServerInterceptor {
    let authority: CertificateAuthority
    let logger: Logger
    let logLimit: RateLimitedLog
    let auditLimit: RateLimitedLog

    /// Statuses worth an audit row: someone presented a bad credential or overstepped.
    static let audited: Set<RPCError.Code> = [.unauthenticated, .permissionDenied, .resourceExhausted, .failedPrecondition]

    public init(authority: CertificateAuthority, logger: Logger,
                logLimit: RateLimitedLog = RateLimitedLog(burst: 50, perSecond: 5),
                auditLimit: RateLimitedLog = RateLimitedLog(burst: 60, perSecond: 1)) {
        self.authority = authority
        self.logger = logger
        self.logLimit = logLimit
        self.auditLimit = auditLimit
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        do {
            let response = try await next(request, context)
            if case .failure(let error) = response.accepted { await report(error, context: context) }
            return response
        } catch let error as RPCError {
            await report(error, context: context)
            throw error
        }
    }

    func report(_ error: RPCError, context: ServerContext) async {
        guard error.code != .cancelled else { return }
        let caller = CallerIdentity.resolve(context)
        let method = context.descriptor.fullyQualifiedMethod
        let reason = String(error.message.prefix(AuthorityError.maximumMessageLength))
        var metadata: Logger.Metadata = ["method": "\(method)", "caller": "\(caller.auditName)", "peer": "\(caller.peer)",
                                         "code": "\(error.code)", "reason": "\(reason)"]
        if error.code == .internalError || error.code == .unknown {
            // The client saw only "internal error": the cause belongs in the log.
            metadata["cause"] = "\(error.cause.map { String(describing: $0) } ?? "none")"
            logLimit.log(logger, .error, "request failed", metadata: metadata)
            return
        }
        logLimit.log(logger, .notice, "refused", metadata: metadata)
        guard Self.audited.contains(error.code), let suppressed = auditLimit.admit() else { return }
        let note = suppressed > 0 ? " (\(suppressed) earlier refusals not recorded)" : ""
        try? await authority.recordRefusal(method: method, code: "\(error.code)", reason: reason + note, caller: caller)
    }
}
