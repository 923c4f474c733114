/// The subjectAltName entries Vouch cares about, as found in a certificate or CSR.
public struct SubjectAltNames: Sendable, Equatable {
    public var uris: [String] = []
    public var dnsNames: [String] = []
    public var ipAddresses: [String] = []
    /// Entries of other types (e-mail, directory names...), which Vouch never grants.
    public var others = 0

    public init(uris: [String] = [], dnsNames: [String] = [], ipAddresses: [String] = []) {
        self.uris = uris
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
    }

    public var spiffeIDs: [String] { uris.filter { $0.hasPrefix("spiffe://") } }
    public var isEmpty: Bool { uris.isEmpty && dnsNames.isEmpty && ipAddresses.isEmpty && others == 0 }
}
