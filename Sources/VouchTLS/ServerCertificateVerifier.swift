import NIOCore
import NIOSSL
import Synchronization
import VouchIdentityRules
import X509

/// A client's check of the server it dialled, run as the TLS custom verification
/// callback: the chain must validate to the trust bundle (RFC 5280), cover the host
/// name or IP dialled, and carry the expected SPIFFE ID. Setting a callback turns
/// BoringSSL's own verification off, so all three happen here.
public final class ServerCertificateVerifier: Sendable {
    private let trust: PeerTrust
    private let host: String
    private let isIPAddress: Bool
    public let expected: ServerIdentity
    private let isRevokedByIssuer: PeerCertificateVerifier.RevokedByIssuer
    private let rejection = Mutex<String?>(nil)

    /// - Parameter isRevokedByIssuer: asked for every certificate of the validated chain but its
    ///   root (an intermediate its root revoked), as `PeerCertificateVerifier` asks.
    public init(rootsPEM: String, host: String, isIPAddress: Bool, expected: ServerIdentity,
                isRevokedByIssuer: @escaping PeerCertificateVerifier.RevokedByIssuer = { _, _ in false }) throws {
        self.trust = try PeerTrust(rootsPEM: rootsPEM, intermediatesPEM: "")
        self.host = host
        self.isIPAddress = isIPAddress
        self.expected = expected
        self.isRevokedByIssuer = isRevokedByIssuer
    }

    /// Why the last handshake was refused, for an error message clearer than a closed connection.
    public var lastRejection: String? { rejection.withLock { $0 } }

    public func verify(_ presented: [NIOSSLCertificate], _ promise: EventLoopPromise<NIOSSLVerificationResultWithMetadata>) {
        let chain: PeerCertificateVerifier.PresentedChain
        switch PeerCertificateVerifier.parsePresented(presented, trust: trust) {
        case .success(let parsed): chain = parsed
        case .failure(let problem):
            reject("the server at \(host): \(problem.reason)", promise)
            return
        }
        let certificates = chain.certificates, leaf = chain.certificates[0]
        let presentedID = leaf.spiffeID
        guard expected.accepts(presentedID) else {
            let shown = presentedID.map { String($0.prefix(256)) } ?? "no SPIFFE ID"
            reject("the server at \(host) presented \(shown), not \(expected)", promise)
            return
        }
        let trust = self.trust, host = self.host, isIPAddress = self.isIPAddress
        promise.completeWithTask { [self] in
            var verifier = Verifier(rootCertificates: trust.roots) {
                RFC5280Policy()
                ServerIdentityPolicy(serverHostname: isIPAddress ? nil : host, serverIP: isIPAddress ? host : nil)
            }
            switch await verifier.validate(leaf: leaf, intermediates: CertificateStore(chain.unknownIntermediates)) {
            case .validCertificate(let validated):
                if let revoked = PeerCertificateVerifier.revocation(in: Array(validated), isRevokedByIssuer) {
                    rejection.withLock { $0 = "the certificate of the server at \(host) did not verify: \(revoked)" }
                    return .failed
                }
                let nioChain = try trust.nioChain(Array(validated), presented: presented, parsed: certificates)
                return .certificateVerified(VerificationMetadata(NIOSSL.ValidatedCertificateChain(nioChain)))
            case .couldNotValidate(let failures):
                let reason = failures.first.map { "\($0.policyFailureReason)" } ?? "no path to a trusted root"
                rejection.withLock { $0 = "the certificate of the server at \(host) did not verify: \(reason)" }
                return .failed
            }
        }
    }

    private func reject(_ reason: String, _ promise: EventLoopPromise<NIOSSLVerificationResultWithMetadata>) {
        rejection.withLock { $0 = reason }
        promise.succeed(.failed)
    }
}
