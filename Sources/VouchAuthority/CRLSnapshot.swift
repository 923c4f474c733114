import VouchCrypto

/// A signed CRL and its metadata.
public struct CRLSnapshot: Sendable {
    public let der: [UInt8]
    public let number: Int64
    public let thisUpdate: Double
    public let nextUpdate: Double
    /// Serial (lowercase hex) of the intermediate that signed it.
    public let issuer: String
    /// The revocation sequence it covers up to.
    let sequence: Int64

    /// The CRL in PEM (`X509 CRL`), as nginx's `ssl_crl` and envoy read it.
    public var pem: String { PEM.encode(der, label: "X509 CRL") }
}
