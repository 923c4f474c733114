import Foundation
import SwiftASN1
import X509

/// What an issued identity must look like before anyone trusts or writes it: a CA
/// answer (or a file on disk) is only believed when it passes every check here.
public struct IdentityExpectations: Sendable {
    /// The exact SPIFFE ID the leaf must carry; nil accepts any single spiffe:// URI.
    public var spiffeID: String?
    /// DNS and IP SANs the leaf may carry; nil allows any.
    public var allowedDNSNames: Set<String>?
    public var allowedIPAddresses: Set<String>?
    /// SubjectPublicKeyInfo (DER) of the key the leaf must hold.
    public var publicKeyDER: [UInt8]
    /// Longest notAfter − notBefore accepted.
    public var maximumLifetime: TimeInterval
    /// Latest notAfter accepted, if any (the requested TTL from now).
    public var latestNotAfter: Date?

    public init(spiffeID: String? = nil, allowedDNSNames: Set<String>? = nil, allowedIPAddresses: Set<String>? = nil,
                publicKeyDER: [UInt8], maximumLifetime: TimeInterval, latestNotAfter: Date? = nil) {
        self.spiffeID = spiffeID
        self.allowedDNSNames = allowedDNSNames
        self.allowedIPAddresses = allowedIPAddresses
        self.publicKeyDER = publicKeyDER
        self.maximumLifetime = maximumLifetime
        self.latestNotAfter = latestNotAfter
    }
}

/// Why an identity was not believed; `description` is the one-line reason that gets logged.
public struct IdentityRejected: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A leaf and intermediates that passed `IssuedIdentityCheck`.
public struct VerifiedIdentity: Sendable {
    public let leaf: Certificate
    public let intermediates: [Certificate]
}

/// Checks a leaf and its intermediates against trust the caller already holds (RFC 5280
/// path validation with swift-certificates), plus what RFC 5280 does not know: the
/// expected SPIFFE ID, key, CA:false and lifetime. Also bounds sizes before parsing.
public enum IssuedIdentityCheck {
    public static let maximumIntermediates = 4
    public static let maximumRoots = 16
    public static let maximumCertificateBytes = 16 * 1024
    /// How far ahead notBefore may be (the issuer's clock may run a little fast).
    public static let clockSkew: TimeInterval = 60

    /// Refuses oversized material before it is parsed.
    public static func checkSizes(leaf: Int, intermediates: [Int], roots: [Int]) throws {
        guard intermediates.count <= maximumIntermediates else {
            throw IdentityRejected("chain has \(intermediates.count) intermediates (at most \(maximumIntermediates))")
        }
        guard roots.count <= maximumRoots else { throw IdentityRejected("\(roots.count) roots offered (at most \(maximumRoots))") }
        for size in [leaf] + intermediates + roots where size > maximumCertificateBytes {
            throw IdentityRejected("a certificate of \(size) bytes (at most \(maximumCertificateBytes))")
        }
    }

    public static func verify(leafDER: [UInt8], intermediatesDER: [[UInt8]], roots: [Certificate],
                              expecting expected: IdentityExpectations, now: Date = Date()) async throws -> VerifiedIdentity {
        try checkSizes(leaf: leafDER.count, intermediates: intermediatesDER.map(\.count), roots: [])
        guard !roots.isEmpty else { throw IdentityRejected("no trusted roots to verify against") }
        let leaf: Certificate, intermediates: [Certificate]
        do {
            leaf = try Certificate(derEncoded: leafDER)
            intermediates = try intermediatesDER.map { try Certificate(derEncoded: $0) }
        } catch {
            throw IdentityRejected("unparseable certificate: \(error)")
        }

        for certificate in [leaf] + intermediates {
            guard certificate.notValidAfter > now else {
                throw IdentityRejected("certificate \(certificate.serialHex) expired at \(certificate.notValidAfter)")
            }
            guard certificate.notValidBefore <= now.addingTimeInterval(clockSkew) else {
                throw IdentityRejected("certificate \(certificate.serialHex) is not valid before \(certificate.notValidBefore)")
            }
        }
        // A certificate issued a moment ago by a CA whose clock runs slightly ahead is checked as of
        // its notBefore (at most `clockSkew` ahead); expiry was checked against `now` above.
        let validationTime = max(now, ([leaf] + intermediates).map(\.notValidBefore).max() ?? now)
        for (index, intermediate) in intermediates.enumerated() {
            guard isAuthority(intermediate) else { throw IdentityRejected("intermediate \(index + 1) is not a CA certificate") }
            let others = intermediates.enumerated().filter { $0.offset != index }.map(\.element)
            if case .couldNotValidate(let failures) = await validate(intermediate, others, roots, validationTime) {
                throw IdentityRejected("intermediate \(index + 1) does not chain to a trusted root: \(summary(failures))")
            }
        }
        if case .couldNotValidate(let failures) = await validate(leaf, intermediates, roots, validationTime) {
            throw IdentityRejected("certificate \(leaf.serialHex) does not chain to a trusted root: \(summary(failures))")
        }
        guard !isAuthority(leaf), (try? leaf.extensions.keyUsage)??.keyCertSign != true else {
            throw IdentityRejected("certificate \(leaf.serialHex) is a CA certificate (CA:true)")
        }

        let names = leaf.subjectAltNames
        guard names.uris.count == 1, let id = names.spiffeIDs.first, names.others == 0 else {
            throw IdentityRejected("certificate \(leaf.serialHex) must carry exactly one spiffe:// URI SAN and no other URI or name types "
                + "(has \(names.uris))")
        }
        if let wanted = expected.spiffeID, id != wanted {
            throw IdentityRejected("certificate \(leaf.serialHex) is for \(id), not \(wanted)")
        }
        if let allowed = expected.allowedDNSNames, let extra = names.dnsNames.first(where: { !allowed.contains($0) }) {
            throw IdentityRejected("certificate \(leaf.serialHex) carries DNS name \(extra), which was not asked for")
        }
        if let allowed = expected.allowedIPAddresses, let extra = names.ipAddresses.first(where: { !allowed.contains($0) }) {
            throw IdentityRejected("certificate \(leaf.serialHex) carries IP address \(extra), which was not asked for")
        }
        guard (try? Certificate.PublicKey(derEncoded: expected.publicKeyDER)) == leaf.publicKey else {
            throw IdentityRejected("certificate \(leaf.serialHex) does not hold the agent's key")
        }
        let lifetime = leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore)
        guard lifetime <= expected.maximumLifetime else {
            throw IdentityRejected("certificate \(leaf.serialHex) lives \(Int(lifetime))s, longer than the \(Int(expected.maximumLifetime))s allowed")
        }
        if let latest = expected.latestNotAfter, leaf.notValidAfter > latest {
            throw IdentityRejected("certificate \(leaf.serialHex) expires at \(leaf.notValidAfter), after the \(latest) asked for")
        }
        return VerifiedIdentity(leaf: leaf, intermediates: intermediates)
    }

    /// The intermediates that are CA certificates chaining to `roots`, e.g. to check who may sign a CRL.
    /// At most `limit` candidates are looked at.
    public static func trustedIssuers(_ intermediates: [Certificate], roots: [Certificate],
                                      now: Date = Date(), limit: Int = maximumIntermediates) async -> [Certificate] {
        var trusted: [Certificate] = []
        for candidate in intermediates.prefix(limit) where isAuthority(candidate) {
            if case .validCertificate = await validate(candidate, [], roots, now) { trusted.append(candidate) }
        }
        return trusted
    }

    /// Whether basicConstraints says CA:true.
    public static func isAuthority(_ certificate: Certificate) -> Bool {
        if case .isCertificateAuthority = (try? certificate.extensions.basicConstraints) ?? nil { return true }
        return false
    }

    private static func validate(_ certificate: Certificate, _ intermediates: [Certificate], _ roots: [Certificate],
                                 _ now: Date) async -> CertificateValidationResult {
        var verifier = Verifier(rootCertificates: CertificateStore(roots)) {
            RFC5280Policy(validationTime: now)
            SubjectAltNamesCheckedByCaller()
        }
        return await verifier.validate(leaf: certificate, intermediates: CertificateStore(intermediates))
    }

    private static func summary(_ failures: [CertificateValidationResult.PolicyFailure]) -> String {
        // The reason may embed whole certificates; a log line needs only its start.
        failures.first.map { String("\($0.policyFailureReason)".prefix(300)) } ?? "no path"
    }
}

/// A leaf with an empty subject carries its identity in a critical SAN (RFC 5280 4.2.1.6);
/// `IssuedIdentityCheck` checks SANs itself, so the path validation may accept it as handled.
private struct SubjectAltNamesCheckedByCaller: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [.X509ExtensionID.subjectAlternativeName]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) async -> PolicyEvaluationResult { .meetsPolicy }
}
