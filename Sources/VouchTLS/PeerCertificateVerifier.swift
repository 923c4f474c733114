import Foundation
import NIOCore
import NIOSSL
import Synchronization
import X509

/// Verifies a TLS peer's certificate chain against Vouch's trust roots with
/// RFC 5280 rules and refuses revoked serials, at handshake time. Roots can be
/// swapped in place (root rollover) without rebuilding any TLS context.
public final class PeerCertificateVerifier: Sendable {
    private struct Trust {
        var roots: [Certificate]
        var intermediates: [Certificate]
    }

    private let trust: Mutex<Trust>
    private let isRevoked: @Sendable (String) -> Bool
    private let isRevokedByIssuer: RevokedByIssuer
    private let onReject: @Sendable (String) -> Void
    /// How long after its notAfter a client certificate is still accepted, when expiry is its
    /// only fault (the CA's `renew_after_expiry`); 0 refuses every expired certificate. Whoever
    /// accepts one must limit what it may do (the CA: Renew only): see `isExpired(_:now:)`.
    public let expiredGrace: TimeInterval

    /// - Parameters:
    ///   - isRevoked: answers for a lowercase hex serial; consulted on every handshake.
    ///   - isRevokedByIssuer: asked for every certificate of the validated chain but its root, with
    ///     the certificate above it; consulted on every handshake (`RevokedByIssuer`).
    ///   - onReject: told why a handshake was refused (TLS 1.3 clients only see a closed connection).
    ///   - expiredGrace: see `expiredGrace`.
    public init(rootsPEM: String, intermediatesPEM: String = "",
                isRevoked: @escaping @Sendable (String) -> Bool = { _ in false },
                isRevokedByIssuer: @escaping RevokedByIssuer = { _, _ in false },
                onReject: @escaping @Sendable (String) -> Void = { _ in }, expiredGrace: TimeInterval = 0) throws {
        self.trust = Mutex(Trust(roots: try Certificate.all(inPEM: rootsPEM), intermediates: try Certificate.all(inPEM: intermediatesPEM)))
        self.isRevoked = isRevoked
        self.isRevokedByIssuer = isRevokedByIssuer
        self.onReject = onReject
        self.expiredGrace = max(0, expiredGrace)
    }

    /// Whether a verified peer certificate is past its notAfter: one accepted within `expiredGrace`.
    public static func isExpired(_ certificate: Certificate, now: Date = Date()) -> Bool {
        certificate.notValidAfter <= now
    }

    /// Replaces the trust roots and known intermediates for new handshakes.
    public func setTrust(rootsPEM: String, intermediatesPEM: String = "") throws {
        let roots = try Certificate.all(inPEM: rootsPEM)
        guard !roots.isEmpty else { throw TLSMaterialError("trust bundle has no certificates") }
        let intermediates = try Certificate.all(inPEM: intermediatesPEM)
        trust.withLock { $0 = Trust(roots: roots, intermediates: intermediates) }
    }

    /// The NIOSSL custom verification callback.
    public func verify(_ presented: [NIOSSLCertificate], _ promise: EventLoopPromise<NIOSSLVerificationResultWithMetadata>) {
        let certificates: [Certificate]
        switch Self.parsePresented(presented) {
        case .success(let parsed): certificates = parsed
        case .failure(let problem):
            reject(problem.reason, promise)
            return
        }
        let leaf = certificates[0]
        let serial = leaf.serialHex
        if isRevoked(serial) {
            reject("certificate \(serial) is revoked", promise)
            return
        }
        let trust = trust.withLock { $0 }
        let onReject = self.onReject, isRevokedByIssuer = self.isRevokedByIssuer
        let grace = expiredGrace
        promise.completeWithTask {
            let intermediates = CertificateStore(trust.intermediates + certificates.dropFirst())
            var verifier = Verifier(rootCertificates: CertificateStore(trust.roots)) { RFC5280Policy() }
            var result = await verifier.validate(leaf: leaf, intermediates: intermediates)
            if case .couldNotValidate = result, let atExpiry = Self.expiryInGrace(leaf, grace: grace, now: Date()) {
                // Expired within the grace: valid if it validates at its last valid second, so
                // expiry is its only fault (chain, signatures, constraints are all checked again).
                var verifier = Verifier(rootCertificates: CertificateStore(trust.roots)) { RFC5280Policy(validationTime: atExpiry) }
                result = await verifier.validate(leaf: leaf, intermediates: intermediates)
            }
            switch result {
            case .validCertificate(let chain):
                if let revoked = Self.revocation(in: Array(chain), isRevokedByIssuer) {
                    onReject(revoked)
                    return .failed
                }
                let nioChain = try chain.map { try NIOSSLCertificate(bytes: $0.der, format: .der) }
                return .certificateVerified(VerificationMetadata(NIOSSL.ValidatedCertificateChain(nioChain)))
            case .couldNotValidate(let failures):
                onReject("certificate \(serial) does not chain to a trusted root: \(failures.first.map { "\($0.policyFailureReason)" } ?? "no path")")
                return .failed
            }
        }
    }

    /// Whether a certificate is revoked by its issuer (the next certificate of a validated chain):
    /// an intermediate listed in its root's CRL. Presented intermediates are the peer's choice, so
    /// every link is asked, not only the leaf's serial.
    public typealias RevokedByIssuer = @Sendable (_ certificate: Certificate, _ issuer: Certificate) -> Bool

    /// Why a validated chain (leaf first, root last) must be refused: its first certificate below
    /// the root that its issuer revoked; nil when there is none.
    public static func revocation(in chain: [Certificate], _ isRevokedByIssuer: RevokedByIssuer) -> String? {
        guard chain.count > 1 else { return nil }
        for index in 0..<(chain.count - 1) where isRevokedByIssuer(chain[index], chain[index + 1]) {
            let serial = chain[index].serialHex
            return index == 0 ? "certificate \(serial) is revoked by its issuer \(chain[1].serialHex)" : "intermediate \(serial) is revoked"
        }
        return nil
    }

    /// For a leaf that expired no longer than `grace` ago: the last second it was valid.
    static func expiryInGrace(_ leaf: Certificate, grace: TimeInterval, now: Date) -> Date? {
        guard grace > 0, leaf.notValidAfter <= now, now.timeIntervalSince(leaf.notValidAfter) <= grace else { return nil }
        return leaf.notValidAfter.addingTimeInterval(-1)
    }

    struct PresentationProblem: Error {
        let reason: String
    }

    /// The certificates a peer presented, leaf first; never empty on success.
    static func parsePresented(_ presented: [NIOSSLCertificate]) -> Result<[Certificate], PresentationProblem> {
        do {
            let certificates = try presented.map { try Certificate(derEncoded: $0.toDERBytes()) }
            return certificates.isEmpty ? .failure(PresentationProblem(reason: "peer sent no certificate")) : .success(certificates)
        } catch {
            return .failure(PresentationProblem(reason: "unparseable peer certificate"))
        }
    }

    private func reject(_ reason: String, _ promise: EventLoopPromise<NIOSSLVerificationResultWithMetadata>) {
        onReject(reason)
        promise.succeed(.failed)
    }
}
