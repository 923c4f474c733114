import GRPCCore
import VouchAuthority

/// The gRPC status a client sees for an authority refusal. The authority core does not import
/// gRPC, so the mapping lives here; handlers just throw.
extension AuthorityError: RPCErrorConvertible {
    public var rpcErrorCode: RPCError.Code {
        switch kind {
        case .unauthenticated: .unauthenticated
        case .permissionDenied: .permissionDenied
        case .invalidArgument: .invalidArgument
        case .failedPrecondition: .failedPrecondition
        case .notFound: .notFound
        case .resourceExhausted: .resourceExhausted
        case .internal: .internalError
        case .unavailable: .unavailable
        }
    }

    public var rpcErrorMessage: String { message }

    /// The refusal's reason, for clients that act on it without parsing the message.
    public var rpcErrorMetadata: Metadata {
        guard let reason else { return [:] }
        return [RefusalReason.trailer: .string(RefusalReason(reason).rawValue)]
    }

    /// The status and message alone: the client learns nothing else (grpc-swift keeps an
    /// RPCError's cause on the server; the interceptor logs it).
    public var rpcErrorCause: (any Error)? { cause.map(LoggedCause.init) }
}

/// An `AuthorityError`'s cause as an error, for `RPCError.cause`: the server's log only.
struct LoggedCause: Error, CustomStringConvertible {
    let description: String
}

extension RPCError {
    /// What a client sees for `error` thrown anywhere in a handler: its own status for an
    /// `RPCError` or an `RPCErrorConvertible`, otherwise `internal` "internal error" with the
    /// error kept as the cause (for the log, never for the client).
    public init(reporting error: any Error) {
        if let error = error as? RPCError {
            self = error
        } else if let convertible = error as? any RPCErrorConvertible {
            self.init(convertible)
        } else {
            self.init(code: .internalError, message: "internal error", cause: error)
        }
    }
}
