import Foundation

/// An entry of a CRL.
public struct RevokedCertificateEntry: Sendable, Equatable {
    public var serial: [UInt8]
    public var revokedAt: Date
    /// RFC 5280 CRLReason code.
    public var reason: Int

    public init(serial: [UInt8], revokedAt: Date, reason: Int) {
        self.serial = serial
        self.revokedAt = revokedAt
        self.reason = reason
    }
}
