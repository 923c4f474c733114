import Foundation
import GRPCCore
import Logging
import VouchAuthority

/// The one edge where errors become gRPC statuses: handlers and the interceptors inside this
/// one just throw. An `AuthorityError` gets its own status (`RPCErrorConvertible`); anything
/// else becomes `internal` "internal error", its cause logged. Every refused RPC is reported
/// once: a log line (method, caller, peer, status, reason) and, for the security-relevant
/// statuses, an audit row `refused`. Both are rate limited, so a flood of bad tokens cannot
/// fill the disk (audit rows with a budget for anonymous callers and one for callers with a
/// certificate); what was dropped is counted in the next line or row. Never logs a secret: the
/// reason is the authority's own message.
public struct ErrorReportingInterceptor: ServerInterceptor {
    let authority: CertificateAuthority
    let logger: Logger
    let logLimit: RateLimitedLog
    let auditLimits: RefusalAuditLimits

    /// Statuses worth an audit row: someone presented a bad credential or overstepped.
    static let audited: Set<RPCError.Code> = [.unauthenticated, .permissionDenied, .resourceExhausted, .failedPrecondition]

    public init(authority: CertificateAuthority, logger: Logger,
                logLimit: RateLimitedLog = RateLimitedLog(burst: 50, perSecond: 5),
                auditLimits: RefusalAuditLimits = RefusalAuditLimits()) {
        self.authority = authority
        self.logger = logger
        self.logLimit = logLimit
        self.auditLimits = auditLimits
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let response: StreamingServerResponse<Output>
        do {
            response = try await next(request, context)
        } catch {
            let status = RPCError(reporting: error)
            await report(status, context: context)
            throw status
        }
        switch response.accepted {
        case .failure(let error):
            await report(error, context: context)
            return response
        case .success(var contents):
            // A streaming handler throws from its producer, after this interceptor has returned.
            let produce = contents.producer
            contents.producer = { writer in
                do {
                    return try await produce(writer)
                } catch let error as RPCError {
                    throw error  // from the transport (the stream closed): not the handler's refusal
                } catch let error as CancellationError {
                    throw error  // the client left or the server is stopping: nothing to report
                } catch {
                    let status = RPCError(reporting: error)
                    await report(status, context: context)
                    throw status
                }
            }
            return StreamingServerResponse(accepted: .success(contents))
        }
    }

    func report(_ error: RPCError, context: ServerContext) async {
        guard error.code != .cancelled else { return }
        let caller = RPCCaller.of(context)
        let method = context.descriptor.fullyQualifiedMethod
        let reason = String(error.message.prefix(AuthorityError.maximumMessageLength))
        var metadata: Logger.Metadata = ["method": "\(method)", "caller": "\(caller.auditName)", "peer": "\(caller.peer)",
                                         "code": "\(error.code)", "reason": "\(reason)"]
        if error.code == .internalError || error.code == .unknown || error.code == .unavailable {
            // The client saw only "internal error" or "database unavailable": the cause belongs in the log.
            metadata["cause"] = "\(error.cause.map { String(describing: $0) } ?? "none")"
            logLimit.log(logger, .error, "request failed", metadata: metadata)
            return
        }
        logLimit.log(logger, .notice, "refused", metadata: metadata)
        guard Self.audited.contains(error.code), let suppressed = auditLimits.budget(for: caller).admit() else { return }
        let note = suppressed > 0 ? " (\(suppressed) earlier refusals not recorded)" : ""
        try? await authority.recordRefusal(method: method, code: "\(error.code)", reason: reason + note, caller: caller)
    }
}
