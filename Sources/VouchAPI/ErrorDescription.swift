import GRPCCore
import VouchAuthority
import VouchCrypto

/// One line a person can read for `error`, for the CLI's stderr and the agent's log and status.
public func describe(_ error: any Error) -> String {
    switch error {
    case let error as RPCError:
        if error.code == .unavailable {
            return "server unavailable (\(error.message))"
        }
        return "\(error.code): \(error.message)"
    case let error as AuthorityError: return error.message
    case let error as CryptoError: return error.message
    default: return String(describing: error)
    }
}
