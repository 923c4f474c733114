import Foundation
import GRPCCore
import Synchronization
import VouchAPI
@testable import VouchAgent
import VouchAuthority
import VouchCrypto
import VouchTLS

/// The real authority core (in-memory store, real OpenSSL signing) answering the agent's calls
/// in-process, on the test's clock. It answers refusals with the gRPC status the server sends,
/// and can be taken down to play an outage.
final class InProcessCA: CertificateAuthorityCalls {
    let authority: CertificateAuthority
    let material: CAMaterial
    private let state = Mutex((down: false, claimsRevoked: false, enrollCalls: 0, renewCalls: 0))

    static let admin = Caller(credential: .certificate(spiffeID: "spiffe://example.org/vouch/admin", serial: "01"), peer: "local")

    init(clock: ManualAgentClock) throws {
        material = try TestCA.material(now: clock.now)
        authority = CertificateAuthority(store: InMemoryAuthorityStore(), material: material,
                                         policy: IssuancePolicy(trustDomain: "example.org"), clock: { clock.now })
    }

    /// While down, every call fails as a refused connection does.
    var isDown: Bool {
        get { state.withLock { $0.down } }
        set { state.withLock { $0.down = newValue } }
    }

    /// While set, every renewal is refused as revoked, as an impostor holding the server's key could.
    var claimsRevoked: Bool {
        get { state.withLock { $0.claimsRevoked } }
        set { state.withLock { $0.claimsRevoked = newValue } }
    }

    var enrollCalls: Int { state.withLock { $0.enrollCalls } }
    var renewCalls: Int { state.withLock { $0.renewCalls } }

    func token(_ spiffeID: String) async throws -> String {
        try await authority.createToken(spiffeID: spiffeID, dnsNames: [], ipAddresses: [], ttlSeconds: 3600, uses: 1,
                                        caller: Self.admin).token.text
    }

    func revoke(_ serial: String, reason: Int = 1) async throws {
        _ = try await authority.revoke(serial: serial, reason: reason, caller: Self.admin)
    }

    func record(_ serial: String) async throws -> CertificateRecord {
        try await authority.certificate(serial: serial)
    }

    func enroll(token: String, key: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        let down = state.withLock {
            $0.enrollCalls += 1
            return $0.down
        }
        if down { throw RPCError(code: .unavailable, message: "connection refused") }
        let csr = try CertificateSigningRequest.create(key: key, subjectAltNames: SubjectAltNames()).der
        return try await answer { try await authority.enroll(token: token, csr: csr, ttlSeconds: ttl, caller: Caller(credential: .none, peer: "local")) }
    }

    /// Renews as the certificate on disk, as the server does with the client certificate of the connection.
    func renew(current: IdentityFiles, newKey: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        let (down, claimsRevoked) = state.withLock {
            $0.renewCalls += 1
            return ($0.down, $0.claimsRevoked)
        }
        if down { throw RPCError(code: .unavailable, message: "connection refused") }
        if claimsRevoked {
            throw RPCError(code: .failedPrecondition, message: "certificate is revoked",
                           metadata: [RefusalReason.trailer: .string(RefusalReason.certificateRevoked.rawValue)])
        }
        let held = try X509Certificate(pem: String(contentsOfFile: current.certificate, encoding: .utf8))
        let caller = Caller(credential: .certificate(spiffeID: held.spiffeID ?? "", serial: held.serialHex), peer: "local")
        let csr = try CertificateSigningRequest.create(key: newKey, subjectAltNames: SubjectAltNames()).der
        return try await answer { try await authority.renew(csr: csr, ttlSeconds: ttl, caller: caller) }
    }

    private func answer(_ call: () async throws -> IssuedCertificate) async throws -> CAAnswer {
        do {
            let issued = try await call()
            return CAAnswer(leaf: issued.record.der, chain: issued.chain, roots: issued.roots)
        } catch {
            throw RPCError(reporting: error)
        }
    }
}
