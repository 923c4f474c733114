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
        withPublicKey { publicKey in key.withUnsafeKeyPointer { EVP_PKEY_eq(publicKey, $0) == 1 } } ?? false
    }

    /// Whether `issuer`'s key verifies this certificate's signature.
    public func isSigned(by issuer: X509Certificate) -> Bool {
        issuer.withPublicKey { key in X509_verify(pointer, key) == 1 } ?? false
    }

    /// Lends the certificate's public key to `body`; nil when it has none usable. A certificate
    /// Vouch just signed for a CSR carries the CSR's key only encoded (CertificateSigner copies it
    /// without decoding), so the key is then decoded here, the way CSRs are (csr.c).
    func withPublicKey<T>(_ body: (OpaquePointer) -> T) -> T? {
        ERR_set_mark()
        defer { ERR_pop_to_mark() }
        if let key = X509_get0_pubkey(pointer) { return body(key) }
        guard let der = try? publicKeyDER else { return nil }
        let decoded: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            guard let spki = vouch_spki_parse(buffer.baseAddress, buffer.count) else { return nil }
            defer { vouch_spki_free(spki) }
            return vouch_spki_public_key(spki)
        }
        guard let decoded else { return nil }
        defer { EVP_PKEY_free(decoded) }
        return body(decoded)
    }
}

/// Joins certificates into one PEM bundle.
public func pemBundle(_ certificates: [X509Certificate]) -> String {
    certificates.map(\.pem).joined()
}
