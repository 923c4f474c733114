/// A signed CRL and its metadata.
public struct CRLSnapshot: Sendable {
    public let der: [UInt8]
    public let number: Int64
    public let thisUpdate: Double
    public let nextUpdate: Double
    /// The revocation sequence it covers up to.
    let sequence: Int64
}
