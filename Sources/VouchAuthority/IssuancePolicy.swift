import Foundation
import VouchIdentityRules

/// Limits the authority applies to every certificate and token.
public struct IssuancePolicy: Sendable {
    public var trustDomain: String
    /// Lifetime when the request does not ask for one.
    public var defaultCertificateTTL: TimeInterval
    /// Upper bound on any requested lifetime.
    public var maximumCertificateTTL: TimeInterval
    /// Lower bound on any requested lifetime.
    public var minimumCertificateTTL: TimeInterval
    /// How far notBefore is set in the past, for peers with slightly slow clocks (at most a tenth of the lifetime).
    public var backdate: TimeInterval
    public var defaultTokenTTL: TimeInterval
    public var maximumTokenTTL: TimeInterval
    /// SPIFFE IDs allowed to use the Admin service and to revoke any certificate.
    public var adminIDs: Set<String>
    /// URL put in issued certificates' CRL distribution point, when set.
    public var crlDistributionPoint: String?
    /// Failed enrollments (bad, used or expired tokens) allowed per peer address per minute.
    public var failedTokenAttemptsPerMinute: Int = 10
    /// How long a CRL is valid (nextUpdate - thisUpdate).
    public var crlValidity: TimeInterval
    /// A CRL older than this is regenerated on the next request even without new revocations.
    public var crlRefreshInterval: TimeInterval
    /// Per-identity rules; when any are set, every SPIFFE ID must match one (the first match applies).
    public var profiles: [CertificateProfile] = []
    /// How long after a renewal the renewed certificate may renew once more (a client that lost
    /// the response retrying); the first child is then revoked, so a lineage keeps one live certificate.
    public var renewalRetryWindow: TimeInterval = 60
    /// Revocations one non-admin identity may make of its own certificates per `selfRevocationWindow`:
    /// every revocation grows the CRL every relying party downloads.
    public var selfRevocationLimit: Int = 10
    public var selfRevocationWindow: TimeInterval = 24 * 3600
    /// How long after expiry an unrevoked, not superseded certificate may still renew (itself the
    /// credential, Renew only); 0 = never. A stolen key of an expired certificate stays usable for
    /// this long, to renew only; revocation still applies.
    public var renewAfterExpiry: TimeInterval = 0

    public init(trustDomain: String,
                defaultCertificateTTL: TimeInterval = 24 * 3600,
                maximumCertificateTTL: TimeInterval = 7 * 24 * 3600,
                minimumCertificateTTL: TimeInterval = 5,
                backdate: TimeInterval = 60,
                defaultTokenTTL: TimeInterval = 15 * 60,
                maximumTokenTTL: TimeInterval = 30 * 24 * 3600,
                adminIDs: Set<String>? = nil,
                crlDistributionPoint: String? = nil,
                crlValidity: TimeInterval = 24 * 3600,
                crlRefreshInterval: TimeInterval = 3600) {
        self.trustDomain = trustDomain
        self.defaultCertificateTTL = defaultCertificateTTL
        self.maximumCertificateTTL = maximumCertificateTTL
        self.minimumCertificateTTL = minimumCertificateTTL
        self.backdate = backdate
        self.defaultTokenTTL = defaultTokenTTL
        self.maximumTokenTTL = maximumTokenTTL
        self.adminIDs = adminIDs ?? [Self.adminID(trustDomain: trustDomain)]
        self.crlDistributionPoint = crlDistributionPoint
        self.crlValidity = crlValidity
        self.crlRefreshInterval = crlRefreshInterval
    }

    /// The SPIFFE ID of the admin certificate `vouch ca init` creates.
    public static func adminID(trustDomain: String) -> String { "spiffe://\(trustDomain)/vouch/admin" }
    /// The SPIFFE ID of the CA server's own certificate.
    public static func serverID(trustDomain: String) -> String { "spiffe://\(trustDomain)/vouch/server" }

    /// The lifetime to issue for a requested TTL in seconds (0 = default), within the profile's limits if any.
    public func certificateLifetime(requested seconds: Int64, profile: CertificateProfile? = nil) throws -> TimeInterval {
        guard seconds >= 0 else { throw AuthorityError(.invalidArgument, "ttl_seconds must not be negative") }
        let maximum = min(profile?.maximumTTL ?? maximumCertificateTTL, maximumCertificateTTL)
        if seconds == 0 { return min(profile?.defaultTTL ?? defaultCertificateTTL, maximum) }
        guard TimeInterval(seconds) >= minimumCertificateTTL else {
            throw AuthorityError(.invalidArgument, "ttl_seconds \(seconds) is below the minimum of \(Int(minimumCertificateTTL))")
        }
        return min(TimeInterval(seconds), maximum)
    }

    /// The profile governing `spiffeID`: nil when no profiles are configured; an error when
    /// profiles are configured and none matches.
    public func profile(for spiffeID: String) throws -> CertificateProfile? {
        guard !profiles.isEmpty else { return nil }
        guard let profile = profiles.first(where: { $0.matches(spiffeID: spiffeID) }) else {
            throw AuthorityError(.invalidArgument, "no profile allows SPIFFE ID \(spiffeID)")
        }
        return profile
    }

    /// Checks what a token would grant against the identity's profile.
    public func validateGrant(spiffeID: String, dnsNames: [String]) throws {
        guard let profile = try profile(for: spiffeID) else { return }
        for name in dnsNames where !profile.allows(dnsName: name) {
            throw AuthorityError(.invalidArgument, "profile \(profile.name) does not allow DNS name \(name)")
        }
    }

    /// The path prefix of the CA's own identities (`/vouch/server`, `/vouch/admin`).
    public static let reservedPathPrefix = "/vouch/"

    /// Whether `spiffeID` belongs to the CA itself or to an admin: such certificates come only
    /// from `vouch ca init` or an explicit command on the CA host, never from a token or a renewal.
    public func isReserved(_ spiffeID: String) -> Bool {
        adminIDs.contains(spiffeID) || spiffeID.hasPrefix("spiffe://\(trustDomain)\(Self.reservedPathPrefix)")
    }

    public func checkNotReserved(_ spiffeID: String) throws {
        if isReserved(spiffeID) {
            throw AuthorityError(.permissionDenied, "\(spiffeID) is reserved for the CA and its admins; it cannot be issued to a workload")
        }
    }

    /// Refuses a configuration that cannot be what its operator meant, before the server
    /// serves anything: lifetimes out of order, negative limits, admin IDs or profile patterns
    /// outside the trust domain, and profiles that name a reserved identity outright.
    public func validate() throws {
        guard defaultCertificateTTL > 0, maximumCertificateTTL >= defaultCertificateTTL else {
            throw AuthorityError(.invalidArgument, "the default certificate lifetime must be positive and not above the maximum")
        }
        guard renewalRetryWindow >= 0 else { throw AuthorityError(.invalidArgument, "the renewal retry window must not be negative") }
        guard selfRevocationLimit >= 0 else { throw AuthorityError(.invalidArgument, "the self-revocation limit must not be negative") }
        guard renewAfterExpiry >= 0 else { throw AuthorityError(.invalidArgument, "renew_after_expiry must not be negative") }
        for id in adminIDs.sorted() { try validateSPIFFEID(id) }
        for profile in profiles {
            for pattern in profile.spiffeIDPatterns {
                guard pattern.hasPrefix("spiffe://\(trustDomain)/") else {
                    throw AuthorityError(.invalidArgument, "profile \(profile.name): \(pattern) is outside trust domain \(trustDomain)")
                }
                if !pattern.contains(where: { "*?[".contains($0) }) && isReserved(pattern) {
                    throw AuthorityError(.invalidArgument, "profile \(profile.name) names \(pattern), which is reserved for the CA and its admins")
                }
            }
        }
    }

    /// Checks a SPIFFE ID is well formed and in this trust domain.
    public func validateSPIFFEID(_ id: String) throws {
        guard let domain = IdentityRules.trustDomain(ofSPIFFEID: id) else {
            throw AuthorityError(.invalidArgument, "\(AuthorityError.quoted(id)) is not a valid SPIFFE ID")
        }
        guard domain == trustDomain else {
            throw AuthorityError(.invalidArgument, "SPIFFE ID \(id) is outside trust domain \(trustDomain)")
        }
    }
}
