import VouchAPI
import VouchCrypto
import VouchTLS

/// The agent's Enroll and Renew over several CA replicas: each call goes to the replica that
/// last answered and moves to the next only when that one gave no answer (`CAReplicas.call`).
///
/// A replica can commit a call and lose the answer (killed, connection reset, deadline passed
/// after the database write); the agent then asks the next replica, and the CA's own rules
/// decide, never the agent:
/// - Enroll: the token's use is spent. A multi-use token allows another enrollment; a
///   single-use one gets "already used" (`unauthenticated`), which is the honest outcome: the
///   operator sees it and makes a new token, as after any lost enrollment answer.
/// - Renew: the CA's renewal retry window (`renewal_retry_window`) lets the same certificate
///   renew once more, for exactly this client that lost the response; the certificate issued
///   in the lost answer is superseded.
struct FailoverCalls: CertificateAuthorityCalls {
    let replicas: CAReplicas
    /// The calls to one replica.
    let callsTo: @Sendable (HostPort) -> any CertificateAuthorityCalls

    func enroll(token: String, key: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        try await replicas.call("enroll") { try await callsTo($0).enroll(token: token, key: key, ttl: ttl) }
    }

    func renew(current: IdentityFiles, newKey: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        try await replicas.call("renew") { try await callsTo($0).renew(current: current, newKey: newKey, ttl: ttl) }
    }
}
