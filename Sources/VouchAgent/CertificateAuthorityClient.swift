import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchCrypto
import VouchTLS

/// An Enroll/Renew answer, not yet believed.
struct CAAnswer: Sendable {
    let leaf: [UInt8]
    let chain: [[UInt8]]
    let roots: [[UInt8]]
    /// How long after expiry the CA lets a certificate renew (`renew_after_expiry`, sent as
    /// response metadata); nil: it does not.
    var renewAfterExpiry: TimeInterval? = nil
}

/// What the agent asks of its CA. `CertificateAuthorityClient` asks the real one over gRPC;
/// tests answer in-process.
protocol CertificateAuthorityCalls: Sendable {
    func enroll(token: String, key: PrivateKey, ttl: Int64) async throws -> CAAnswer
    /// Renews as the identity currently in `current` (its certificate and key on disk).
    func renew(current: IdentityFiles, newKey: PrivateKey, ttl: Int64) async throws -> CAAnswer
}

/// The agent's calls to one CA replica, each on a fresh connection with a deadline (so a dead
/// replica costs one deadline at most, and `FailoverCalls` can move on). Answers are
/// size-bounded here and only returned raw: the caller verifies them before using them.
struct CertificateAuthorityClient: CertificateAuthorityCalls {
    let address: HostPort
    /// --ca-bundle: Enroll verifies the CA against it; later calls against bundle.pem (`CAServerIdentity`).
    let bundlePath: String
    let timeout: Duration
    let server: CAServerIdentity

    /// Largest unary answer read from the CA (an honest one is a few KiB).
    static let maxResponseBytes = 1 << 20
    /// The longest `renew_after_expiry` believed: a CA's hint cannot keep an expired agent
    /// retrying for longer than this instead of asking for a token.
    static let longestRenewAfterExpiry: TimeInterval = 30 * 24 * 3600

    func enroll(token: String, key: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        var request = Vouch_V1_EnrollRequest()
        request.token = token
        request.csr = Data(try CertificateSigningRequest.create(key: key, subjectAltNames: SubjectAltNames()).der)
        request.ttlSeconds = ttl
        return try await call(server.enrollmentCredentials(bundlePath: bundlePath)) {
            try await $0.enroll(request, options: options) { (try $0.message, $0.metadata) }
        }
    }

    /// Renews over mTLS with the certificate and key currently on disk.
    func renew(current files: IdentityFiles, newKey: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        var request = Vouch_V1_RenewRequest()
        request.csr = Data(try CertificateSigningRequest.create(key: newKey, subjectAltNames: SubjectAltNames()).der)
        request.ttlSeconds = ttl
        return try await call(server.credentials(bundlePath: bundlePath, clientCertificate: true)) {
            try await $0.renew(request, options: options) { (try $0.message, $0.metadata) }
        }
    }

    private var options: CallOptions {
        var options = VouchClient.options(timeout: timeout)
        options.limitResponses(to: Self.maxResponseBytes)
        return options
    }

    private func call(_ credentials: VouchClient.Credentials,
                      _ body: (Vouch_V1_CertificateAuthority.Client<HTTP2ClientTransport.Posix>) async throws
                          -> (Vouch_V1_CertificateResponse, Metadata))
        async throws -> CAAnswer {
        let (response, metadata) = try await VouchClient.with(server: address, credentials: credentials) { client in
            try await body(Vouch_V1_CertificateAuthority.Client(wrapping: client))
        }
        try IssuedIdentityCheck.checkSizes(leaf: response.certificate.count, intermediates: response.chain.map(\.count),
                                           roots: response.roots.map(\.count))
        let renewAfterExpiry = metadata[stringValues: AuthenticationInterceptor.renewAfterExpiryHeader].first(where: { _ in true })
            .flatMap(TimeInterval.init).map { min($0, Self.longestRenewAfterExpiry) }
        return CAAnswer(leaf: Array(response.certificate), chain: response.chain.map { Array($0) }, roots: response.roots.map { Array($0) },
                        renewAfterExpiry: renewAfterExpiry)
    }
}

extension CallOptions {
    /// Caps the size of each message read from the CA. grpc-swift-nio-transport 2.x bounds the
    /// messages a client reads by `maxRequestMessageBytes` (the agent's own requests are a few
    /// hundred bytes), so both are set.
    mutating func limitResponses(to bytes: Int) {
        maxResponseMessageBytes = bytes
        maxRequestMessageBytes = bytes
    }
}
