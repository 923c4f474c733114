import Foundation
import NIOCore
import NIOSSL
import Synchronization
import X509

/// Verifies a TLS peer's certificate chain against Vouch's trust roots with
/// RFC 5280 rules and refuses revoked serials, at handshake time. Roots can be
/// swapped in place (root rollover) without rebuilding any TLS context.
public final class PeerCertificateVerifier: Sendable {
    private let trust: Mutex<PeerTrust>
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
        self.trust = Mutex(try PeerTrust(rootsPEM: rootsPEM, intermediatesPEM: intermediatesPEM))
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
        let replacement = try PeerTrust(rootsPEM: rootsPEM, intermediatesPEM: intermediatesPEM)
        guard !replacement.isEmpty else { throw TLSMaterialError("trust bundle has no certificates") }
        trust.withLock { $0 = replacement }
    }

    /// The NIOSSL custom verification callback.
    public func verify(_ presented: [NIOSSLCertificate], _ promise: EventLoopPromise<NIOSSLVerificationResultWithMetadata>) {
        let trust = trust.withLock { $0 }
        let chain: PresentedChain
        switch Self.parsePresented(presented, trust: trust) {
        case .success(let parsed): chain = parsed
        case .failure(let problem):
            reject(problem.reason, promise)
            return
        }
        let certificates = chain.certificates, leaf = chain.certificates[0]
        let serial = leaf.serialHex
        if isRevoked(serial) {
            reject("certificate \(serial) is revoked", promise)
            return
        }
        let onReject = self.onReject, isRevokedByIssuer = self.isRevokedByIssuer
        let grace = expiredGrace
        promise.completeWithTask {
            let likely = trust.intermediates(forIssuing: leaf)
            var intermediates = CertificateStore(likely + chain.unknownIntermediates)
            var verifier = Verifier(rootCertificates: trust.roots) { RFC5280Policy() }
            var result = await verifier.validate(leaf: leaf, intermediates: intermediates)
            if case .couldNotValidate = result, likely.count < trust.intermediates.count {
                // Key identifiers only order the search; RFC 5280 path validation does not read them.
                // A leaf whose AKI names another key (not one Vouch wrote) still chains through the
                // intermediate that signed it: the ones set aside are tried when no path was found.
                intermediates = CertificateStore(trust.intermediates.map(\.certificate) + chain.unknownIntermediates)
                result = await verifier.validate(leaf: leaf, intermediates: intermediates)
            }
            if case .couldNotValidate = result, let atExpiry = Self.expiryInGrace(leaf, grace: grace, now: Date()) {
                // Expired within the grace: valid if it validates at its last valid second, so
                // expiry is its only fault (chain, signatures, constraints are all checked again).
                var verifier = Verifier(rootCertificates: trust.roots) { RFC5280Policy(validationTime: atExpiry) }
                result = await verifier.validate(leaf: leaf, intermediates: intermediates)
            }
            switch result {
            case .validCertificate(let chain):
                if let revoked = Self.revocation(in: Array(chain), isRevokedByIssuer) {
                    onReject(revoked)
                    return .failed
                }
                let nioChain = try trust.nioChain(Array(chain), presented: presented, parsed: certificates)
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

    /// What a peer presented: its certificates, leaf first (never empty), and those of its
    /// intermediates the trust does not know. Each candidate issuer costs path building a
    /// signature check, so presented copies of known intermediates are not offered twice.
    struct PresentedChain {
        var certificates: [Certificate] = []
        var unknownIntermediates: [Certificate] = []
    }

    /// Parses what a peer presented; a presented copy of a certificate the trust knows is taken
    /// from the trust instead of being parsed again.
    static func parsePresented(_ presented: [NIOSSLCertificate], trust: PeerTrust) -> Result<PresentedChain, PresentationProblem> {
        guard !presented.isEmpty else { return .failure(PresentationProblem(reason: "peer sent no certificate")) }
        var chain = PresentedChain()
        do {
            for (index, nio) in presented.enumerated() {
                let der = try nio.toDERBytes()
                if index > 0, let known = trust.known(der: der) {
                    chain.certificates.append(known.certificate)
                    continue
                }
                let certificate = try Certificate(derEncoded: der)
                chain.certificates.append(certificate)
                if index > 0 { chain.unknownIntermediates.append(certificate) }
            }
            return .success(chain)
        } catch {
            return .failure(PresentationProblem(reason: "unparseable peer certificate"))
        }
    }

    private func reject(_ reason: String, _ promise: EventLoopPromise<NIOSSLVerificationResultWithMetadata>) {
        onReject(reason)
        promise.succeed(.failed)
    }
}
