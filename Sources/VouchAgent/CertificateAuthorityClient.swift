import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchCrypto
import VouchTLS

/// The agent's calls to the CA, each on a fresh connection with a deadline.
struct CertificateAuthorityClient: Sendable {
    let address: HostPort
    let bundlePath: String
    let timeout: Double

    struct Issued {
        let leaf: X509Certificate
        let chain: [X509Certificate]
        let roots: [X509Certificate]
    }

    func enroll(token: String, key: PrivateKey, ttl: Int64) async throws -> Issued {
        var request = Vouch_V1_EnrollRequest()
        request.token = token
        request.csr = Data(try CertificateSigningRequest.create(key: key, subjectAltNames: SubjectAltNames()).der)
        request.ttlSeconds = ttl
        let credentials = VouchClient.Credentials(bundlePEMPath: bundlePath)
        return try await call(credentials) { try await $0.enroll(request, options: options) }
    }

    /// Renews over mTLS with the certificate and key currently on disk.
    func renew(current files: IdentityFiles, newKey: PrivateKey, ttl: Int64) async throws -> Issued {
        var request = Vouch_V1_RenewRequest()
        request.csr = Data(try CertificateSigningRequest.create(key: newKey, subjectAltNames: SubjectAltNames()).der)
        request.ttlSeconds = ttl
        let credentials = VouchClient.Credentials(bundlePEMPath: bundlePath, certificatePEMPath: files.certificate, keyPEMPath: files.key)
        return try await call(credentials) { try await $0.renew(request, options: options) }
    }

    private var options: CallOptions { VouchClient.options(timeout: .milliseconds(Int64(timeout * 1000))) }

    private func call(_ credentials: VouchClient.Credentials,
                      _ body: (Vouch_V1_CertificateAuthority.Client<HTTP2ClientTransport.Posix>) async throws -> Vouch_V1_CertificateResponse)
        async throws -> Issued {
        let response = try await VouchClient.with(server: address, credentials: credentials) { client in
            try await body(Vouch_V1_CertificateAuthority.Client(wrapping: client))
        }
        return Issued(leaf: try X509Certificate(der: Array(response.certificate)),
                      chain: try response.chain.map { try X509Certificate(der: Array($0)) },
                      roots: try response.roots.map { try X509Certificate(der: Array($0)) })
    }
}
