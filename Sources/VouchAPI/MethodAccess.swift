/// Who may call each method, before the authority applies its own rules.
public enum MethodAccess: Sendable, Equatable {
    /// Any TLS client, with or without a client certificate.
    case anyClient
    /// A verified, unrevoked client certificate.
    case certificate
    /// A client certificate whose SPIFFE ID is an admin identity.
    case admin

    /// Who may call what, by fully qualified method or service. Anything
    /// not listed is refused.
    static let rules: [String: MethodAccess] = [
        "vouch.v1.CertificateAuthority/Enroll": .anyClient,  // the token is checked by the authority
        "vouch.v1.CertificateAuthority/Renew": .certificate,
        "vouch.v1.CertificateAuthority/Revoke": .certificate,  // admin or owner, checked by the authority
        "vouch.v1.CertificateAuthority/GetTrustBundle": .anyClient,
        "vouch.v1.CertificateAuthority/GetCRL": .anyClient,
        "vouch.v1.CertificateAuthority/WatchRevocations": .certificate,
        "vouch.v1.CertificateAuthority/WatchTrustBundle": .certificate,
        "vouch.v1.CertificateAuthority/ConfirmTrustBundle": .certificate,
        "vouch.v1.CertificateAuthority/ReportAgent": .certificate,  // agents only, checked by the authority
        "vouch.v1.Admin": .admin,
        "grpc.health.v1.Health": .anyClient,
    ]

    static func rule(service: String, method: String) -> MethodAccess? {
        rules["\(service)/\(method)"] ?? rules[service]
    }
}
