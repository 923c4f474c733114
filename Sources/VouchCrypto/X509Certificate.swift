internal import CVouchOpenSSL
import Foundation

/// An X.509 certificate held by OpenSSL, with the fields Vouch reads from it.
public final class X509Certificate: @unchecked Sendable {
    // Immutable after init; other files reach it only through `withUnsafeX509Pointer`.
    private let pointer: OpaquePointer
    public let der: [UInt8]

    init(owning pointer: OpaquePointer) throws {
        self.pointer = pointer
        self.der = try derEncode { i2d_X509(pointer, $0) }
    }

    deinit { X509_free(pointer) }

    /// Lends the OpenSSL X509 to `body`, which must not keep it (nor anything it owns) after returning.
    func withUnsafeX509Pointer<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        try body(pointer)
    }

    public convenience init(der: [UInt8]) throws {
        let parsed: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_X509(nil, &cursor, buffer.count)
        }
        guard let parsed else { throw cryptoFailure(.malformed, "not a DER certificate") }
        try self.init(owning: parsed)
    }

    public convenience init(pem: String) throws {
        let parsed: OpaquePointer? = try withReadBIO(Array(pem.utf8)) { PEM_read_bio_X509($0, nil, nil, nil) }
        guard let parsed else { throw cryptoFailure(.malformed, "not a PEM certificate") }
        try self.init(owning: parsed)
    }

    /// Every certificate in a PEM bundle, in order.
    public static func all(inPEM pem: String) throws -> [X509Certificate] {
        let marker = "-----END CERTIFICATE-----"
        return try pem.components(separatedBy: marker)
            .filter { $0.contains("-----BEGIN CERTIFICATE-----") }
            .map { try X509Certificate(pem: $0 + marker + "\n") }
    }

    public var pem: String { PEM.encode(der, label: "CERTIFICATE") }

    /// Serial number, lowercase hex without separators or leading zero bytes.
    public var serialHex: String {
        SerialNumber.hex(X509_get0_serialNumber(pointer).flatMap(integerBytes) ?? [])
    }

    public var notBefore: Date { date(fromASN1: X509_get0_notBefore(pointer)) ?? .distantPast }
    public var notAfter: Date { date(fromASN1: X509_get0_notAfter(pointer)) ?? .distantPast }

    public var subjectAltNames: SubjectAltNames { readSubjectAltNames(vouch_x509_subject_alt_names(pointer)) }

    /// The first SPIFFE ID in the URI SANs.
    public var spiffeID: String? { subjectAltNames.spiffeIDs.first }

    /// The subject's common name, if any.
    public var commonName: String? {
        guard let name = X509_get_subject_name(pointer) else { return nil }
        var buffer = [CChar](repeating: 0, count: 256)
        let length = X509_NAME_get_text_by_NID(name, NID_commonName, &buffer, Int32(buffer.count))
        return length > 0 ? decodeCString(buffer) : nil
    }

    /// The SubjectPublicKeyInfo, DER, as the certificate encodes it.
    public var publicKeyDER: [UInt8] {
        get throws { try derEncode { i2d_X509_PUBKEY(X509_get_X509_PUBKEY(pointer), $0) } }
    }

    /// Whether `key` is the private half of this certificate's public key.
    public func matches(_ key: PrivateKey) -> Bool {
        key.withUnsafeKeyPointer { X509_check_private_key(pointer, $0) == 1 }
    }

    /// Whether `issuer`'s key verifies this certificate's signature.
    public func isSigned(by issuer: X509Certificate) -> Bool {
        issuer.withUnsafeX509Pointer { issuer in
            guard let key = X509_get0_pubkey(issuer) else { return false }
            return X509_verify(pointer, key) == 1
        }
    }
}

/// Joins certificates into one PEM bundle.
public func pemBundle(_ certificates: [X509Certificate]) -> String {
    certificates.map(\.pem).joined()
}
