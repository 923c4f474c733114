import VouchIdentityRules

/// The SPIFFE ID a client requires of the server it dials, checked after the certificate
/// chains to the trust bundle. A chain and a matching host name are not enough: any
/// workload certificate of the same CA may carry the server's DNS name or IP.
public enum ServerIdentity: Sendable, Equatable, CustomStringConvertible {
    /// Exactly this SPIFFE ID.
    case spiffeID(String)
    /// The Vouch CA server: `spiffe://<trustDomain>/vouch/server`. With no trust domain
    /// (an agent before enrollment), any trust domain the bundle's roots vouch for.
    case vouchServer(trustDomain: String?)

    /// The path of the CA server's own SPIFFE ID; no workload can be issued it.
    public static let vouchServerPath = "/vouch/server"

    public func accepts(_ presented: String?) -> Bool {
        guard let presented else { return false }
        switch self {
        case .spiffeID(let expected):
            return presented == expected
        case .vouchServer(let trustDomain?):
            return presented == "spiffe://\(trustDomain)\(Self.vouchServerPath)"
        case .vouchServer(nil):
            guard let domain = IdentityRules.trustDomain(ofSPIFFEID: presented) else { return false }
            return presented == "spiffe://\(domain)\(Self.vouchServerPath)"
        }
    }

    public var description: String {
        switch self {
        case .spiffeID(let id): return id
        case .vouchServer(let trustDomain?): return "spiffe://\(trustDomain)\(Self.vouchServerPath)"
        case .vouchServer(nil): return "spiffe://<trust domain>\(Self.vouchServerPath)"
        }
    }
}
