/// A certificate handed to a client, with what it needs to build its chain.
public struct IssuedCertificate: Sendable {
    public let record: CertificateRecord
    /// Intermediates from the leaf's issuer up to the root (excluded), DER.
    public let chain: [[UInt8]]
    /// Trust roots, DER.
    public let roots: [[UInt8]]
}

/// A signed CRL and its metadata.
public struct CRLSnapshot: Sendable {
    public let der: [UInt8]
    public let number: Int64
    public let thisUpdate: Double
    public let nextUpdate: Double
    /// The revocation sequence it covers up to.
    let sequence: Int64
}
