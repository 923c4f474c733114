import Foundation
import VouchCrypto
#if canImport(Glibc)
import Glibc
#endif

/// Issuance rules for a family of identities, chosen by SPIFFE ID: which IDs and DNS
/// names may be granted, how long certificates live, and which key types are accepted.
/// With no profiles configured, any ID in the trust domain gets the global limits.
public struct CertificateProfile: Sendable, Equatable {
    public var name: String
    /// Globs (`*` any run of characters, `?` one) over SPIFFE IDs, e.g. `spiffe://example.org/web/*`.
    public var spiffeIDPatterns: [String]
    /// Globs over DNS names a token for this profile may grant; empty means none.
    public var dnsPatterns: [String]
    public var defaultTTL: TimeInterval?
    public var maximumTTL: TimeInterval?
    /// Accepted CSR key types; nil accepts every type Vouch accepts.
    public var keyTypes: Set<KeyType>?

    public init(name: String, spiffeIDPatterns: [String], dnsPatterns: [String] = [], defaultTTL: TimeInterval? = nil,
                maximumTTL: TimeInterval? = nil, keyTypes: Set<KeyType>? = nil) {
        self.name = name
        self.spiffeIDPatterns = spiffeIDPatterns
        self.dnsPatterns = dnsPatterns
        self.defaultTTL = defaultTTL
        self.maximumTTL = maximumTTL
        self.keyTypes = keyTypes
    }

    public func matches(spiffeID: String) -> Bool {
        spiffeIDPatterns.contains { Glob.matches(pattern: $0, spiffeID) }
    }

    public func allows(dnsName: String) -> Bool {
        dnsPatterns.contains { Glob.matches(pattern: $0.lowercased(), dnsName.lowercased()) }
    }
}

/// Shell-style glob matching (`*`, `?`, `[...]`) by the C library's fnmatch, the same syntax
/// as the SQLite GLOB that `vouch cert list --identity` uses. `*` also matches `/`.
enum Glob {
    static func matches(pattern: String, _ text: String) -> Bool {
        fnmatch(pattern, text, 0) == 0
    }
}
