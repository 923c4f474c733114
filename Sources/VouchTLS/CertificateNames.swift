import Foundation
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
            case .ipAddress(let address): ipAddresses.append(Self.ipText(Array(address.bytes)))
            default: others += 1
            }
        }
    }

    public var spiffeIDs: [String] { uris.filter { $0.hasPrefix("spiffe://") } }

    /// inet_ntop's text for 4 or 16 network-order bytes; anything else as hex.
    static func ipText(_ bytes: [UInt8]) -> String {
        let family: Int32
        switch bytes.count {
        case 4: family = AF_INET
        case 16: family = AF_INET6
        default: return bytes.map { String(format: "%02x", $0) }.joined()
        }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
