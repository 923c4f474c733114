import Foundation

/// What goes into a certificate other than its key and issuer.
public struct CertificateTemplate: Sendable {
    public enum Role: Sendable {
        /// A CA certificate; `pathLength` nil means unlimited.
        case authority(pathLength: Int?)
        /// A service certificate: digitalSignature, serverAuth + clientAuth, CA:false.
        case leaf
    }

    public var role: Role
    public var serial: [UInt8]
    /// Subject attributes in order, e.g. [("O", "Vouch"), ("CN", "Vouch Root CA")].
    public var subject: [(String, String)]
    public var notBefore: Date
    public var notAfter: Date
    public var subjectAltNames: SubjectAltNames
    /// URL put in the CRL distribution points extension, when configured.
    public var crlDistributionPoint: String?

    public init(role: Role, serial: [UInt8], subject: [(String, String)], notBefore: Date, notAfter: Date,
                subjectAltNames: SubjectAltNames = SubjectAltNames(), crlDistributionPoint: String? = nil) {
        self.role = role
        self.serial = serial
        self.subject = subject
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.subjectAltNames = subjectAltNames
        self.crlDistributionPoint = crlDistributionPoint
    }
}
