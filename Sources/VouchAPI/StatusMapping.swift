import GRPCCore
import VouchAuthority

extension AuthorityError {
    /// The gRPC status a client sees for this refusal.
    var rpcError: RPCError {
        let code: RPCError.Code
        switch kind {
        case .unauthenticated: code = .unauthenticated
        case .permissionDenied: code = .permissionDenied
        case .invalidArgument: code = .invalidArgument
        case .failedPrecondition: code = .failedPrecondition
        case .notFound: code = .notFound
        case .resourceExhausted: code = .resourceExhausted
        case .internal: code = .internalError
        }
        return RPCError(code: code, message: message)
    }
}

/// Runs a handler body, turning authority refusals into gRPC statuses and
/// hiding unexpected errors behind `internal` (their details go to the log).
func mapErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as AuthorityError {
        throw error.rpcError
    } catch let error as RPCError {
        throw error
    } catch {
        throw RPCError(code: .internalError, message: "internal error", cause: error)
    }
}
