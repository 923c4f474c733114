import Foundation
import VouchIdentityRules
import X509

/// A certificate's subjectAltName entries as Vouch checks them. IP addresses are in their
/// canonical text form, so they compare equal to the grants a CA was given.
public struct CertificateNames: Sendable, Equatable {
    public var uris: [String] = []
    public var dnsNames: [String] = []
    public var ipAddresses: [String] = []
    /// Entries of other types (e-mail, directory names...), which Vouch never grants.
    public var others = 0

    public init() {}

    init(_ names: SubjectAlternativeNames) {
        for name in names {
            switch name {
            case .uniformResourceIdentifier(let uri): uris.append(uri)
            case .dnsName(let dnsName): dnsNames.append(dnsName)
            case .ipAddress(let address): ipAddresses.append(IPAddress.format(Array(address.bytes)))
            default: others += 1
            }
        }
    }

    public var spiffeIDs: [String] { uris.filter { $0.hasPrefix("spiffe://") } }
}
