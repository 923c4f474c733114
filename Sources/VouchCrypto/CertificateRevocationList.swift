internal import CVouchOpenSSL
import Foundation

/// A parsed DER CRL, for clients that check revocation from it.
public final class CertificateRevocationList: @unchecked Sendable {
    private let pointer: OpaquePointer
    public let der: [UInt8]

    deinit { X509_CRL_free(pointer) }

    public init(der: [UInt8]) throws {
        let parsed: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_X509_CRL(nil, &cursor, buffer.count)
        }
        guard let parsed else { throw cryptoFailure(.malformed, "not a DER CRL") }
        self.pointer = parsed
        self.der = der
    }

    /// Whether `issuer`'s key verifies the CRL signature.
    public func isSigned(by issuer: X509Certificate) -> Bool {
        issuer.withPublicKey { X509_CRL_verify(pointer, $0) == 1 } ?? false
    }

    /// Whether the CRL's issuer name is `issuer`'s subject name.
    public func isIssued(by issuer: X509Certificate) -> Bool {
        issuer.withUnsafeX509Pointer { issuer in
            guard let subject = X509_get_subject_name(issuer), let name = X509_CRL_get_issuer(pointer) else { return false }
            return X509_NAME_cmp(name, subject) == 0
        }
    }

    public var thisUpdate: Date { date(fromASN1: X509_CRL_get0_lastUpdate(pointer)) ?? .distantPast }
    public var nextUpdate: Date? { date(fromASN1: X509_CRL_get0_nextUpdate(pointer)) }

    /// The CRL number extension, or nil when absent.
    public var number: Int64? {
        guard let raw = X509_CRL_get_ext_d2i(pointer, NID_crl_number, nil, nil) else { return nil }
        let integer = raw.assumingMemoryBound(to: ASN1_INTEGER.self)
        defer { ASN1_INTEGER_free(integer) }
        var value: Int64 = 0
        return ASN1_INTEGER_get_int64(&value, integer) == 1 ? value : nil
    }

    /// Every entry: serial, revocation date and reason (0 when the entry has none).
    public var entries: [RevokedCertificateEntry] {
        guard let stack = X509_CRL_get_REVOKED(pointer) else { return [] }
        return (0..<OPENSSL_sk_num(stack)).compactMap { index in
            guard let item = OPENSSL_sk_value(stack, index) else { return nil }
            let revoked = OpaquePointer(item)
            guard let bytes = X509_REVOKED_get0_serialNumber(revoked).flatMap(integerBytes) else { return nil }
            var reason = 0
            if let code = X509_REVOKED_get_ext_d2i(revoked, NID_crl_reason, nil, nil) {
                let enumerated = code.assumingMemoryBound(to: ASN1_ENUMERATED.self)
                reason = ASN1_ENUMERATED_get(enumerated)
                ASN1_ENUMERATED_free(enumerated)
            }
            let revokedAt = date(fromASN1: X509_REVOKED_get0_revocationDate(revoked)) ?? .distantPast
            return RevokedCertificateEntry(serial: bytes, revokedAt: revokedAt, reason: reason)
        }
    }
}
