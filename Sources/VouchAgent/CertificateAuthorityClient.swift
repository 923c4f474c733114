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
    let bundlePath: String
    let timeout: Duration
    let server: CAServerIdentity

    /// Largest unary answer read from the CA (an honest one is a few KiB).
    static let maxResponseBytes = 1 << 20

    func enroll(token: String, key: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        var request = Vouch_V1_EnrollRequest()
        request.token = token
        request.csr = Data(try CertificateSigningRequest.create(key: key, subjectAltNames: SubjectAltNames()).der)
        request.ttlSeconds = ttl
        return try await call(server.credentials(bundlePath: bundlePath, clientCertificate: false)) {
            try await $0.enroll(request, options: options)
        }
    }

    /// Renews over mTLS with the certificate and key currently on disk.
    func renew(current files: IdentityFiles, newKey: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        var request = Vouch_V1_RenewRequest()
        request.csr = Data(try CertificateSigningRequest.create(key: newKey, subjectAltNames: SubjectAltNames()).der)
        request.ttlSeconds = ttl
        return try await call(server.credentials(bundlePath: bundlePath, clientCertificate: true)) {
            try await $0.renew(request, options: options)
        }
    }

    private var options: CallOptions {
        var options = VouchClient.options(timeout: timeout)
        options.limitResponses(to: Self.maxResponseBytes)
        return options
    }

    private func call(_ credentials: VouchClient.Credentials,
                      _ body: (Vouch_V1_CertificateAuthority.Client<HTTP2ClientTransport.Posix>) async throws -> Vouch_V1_CertificateResponse)
        async throws -> CAAnswer {
        let response = try await VouchClient.with(server: address, credentials: credentials) { client in
            try await body(Vouch_V1_CertificateAuthority.Client(wrapping: client))
        }
        try IssuedIdentityCheck.checkSizes(leaf: response.certificate.count, intermediates: response.chain.map(\.count),
                                           roots: response.roots.map(\.count))
        return CAAnswer(leaf: Array(response.certificate), chain: response.chain.map { Array($0) }, roots: response.roots.map { Array($0) })
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
