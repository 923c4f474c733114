import GRPCCore
import VouchAPI

/// What a failed call to one CA replica says, which decides whether the agent asks the next
/// replica. Only failures that say nothing about the request move on; the CA's answer (a
/// refusal such as `failedPrecondition`, `unauthenticated`, `permissionDenied`,
/// `invalidArgument`, `notFound`, `resourceExhausted`) is its decision, and asking another
/// replica must not turn a refusal into a retry storm.
enum ReplicaFailure: Equatable {
    /// No answer: connection refused or reset, TLS handshake failed, deadline passed, the
    /// replica cut the call or failed inside (`internal`: e.g. it lost its database).
    case unreachable
    /// The replica failed the agent's server identity check (wrong SPIFFE ID, chain or host):
    /// a misconfigured replica or an impostor, worth a loud log line, and no answer either.
    case failedIdentityCheck
    /// An answer from the CA, or a failure on the agent's side (its own bundle unreadable, an
    /// answer over the size cap): another replica would not change it.
    case answer

    init(_ error: any Error) {
        guard let error = error as? RPCError else {
            self = .answer
            return
        }
        switch error.code {
        case .unavailable:
            // VouchClient turns a handshake its verifier refused into this message.
            self = error.message.hasPrefix("refusing the server") ? .failedIdentityCheck : .unreachable
        // A Vouch server's connection cap closes surplus connections at accept, which the agent
        // sees as `unavailable`; a `resourceExhausted` status is always the authority's own limit
        // (token guessing, self-revocation budget), kept per replica, so it does not move on.
        case .deadlineExceeded, .cancelled, .internalError, .unknown:
            self = .unreachable
        default:
            self = .answer
        }
    }

    var movesOn: Bool { self != .answer }
}

/// Every replica failed without an answer: one error naming each address and why.
struct CAReplicasUnreachable: Error, CustomStringConvertible {
    struct Attempt: Sendable {
        let address: HostPort
        let reason: String
    }

    let attempts: [Attempt]

    var description: String {
        "no CA replica answered (\(attempts.count) tried): "
            + attempts.map { "\($0.address): \($0.reason)" }.joined(separator: "; ")
    }
}
