/// A certificate handed to a client, with what it needs to build its chain.
public struct IssuedCertificate: Sendable {
    public let record: CertificateRecord
    /// Intermediates from the leaf's issuer up to the root (excluded), DER.
    public let chain: [[UInt8]]
    /// Trust roots, DER.
    public let roots: [[UInt8]]
}
