internal import CVouchOpenSSL
import Foundation

/// A PKCS#10 request whose signature has been checked: holding one proves the
/// requester possesses the private key.
public final class CertificateSigningRequest: @unchecked Sendable {
    // Immutable after init; other files reach them only through `withUnsafeSubjectKeyInfo`.
    private let pointer: OpaquePointer
    private let key: OpaquePointer
    public let der: [UInt8]

    deinit {
        EVP_PKEY_free(key)
        VOUCH_CSR_free(pointer)
    }

    /// Lends the request's SubjectPublicKeyInfo (a `VOUCH_SPKI`) to `body`, which must not keep it.
    func withUnsafeSubjectKeyInfo<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        try body(vouch_csr_get0_spki(pointer))
    }

    /// Largest CSR accepted; real ones are well under 4 KiB even with RSA 8192.
    public static let maximumSize = 16 * 1024

    /// Parses a DER CSR and verifies its self-signature (proof of possession). The CSR is read
    /// with Vouch's own ASN.1 templates (csr.c), which skip OpenSSL 3's decoder lookup for the key.
    public init(der: [UInt8]) throws {
        guard !der.isEmpty else { throw CryptoError(.malformed, "CSR is empty") }
        guard der.count <= Self.maximumSize else {
            throw CryptoError(.malformed, "CSR is \(der.count) bytes, more than \(Self.maximumSize)")
        }
        let parsed = der.withUnsafeBufferPointer { vouch_csr_parse($0.baseAddress, $0.count) }
        guard let parsed else { throw cryptoFailure(.malformed, "CSR is not valid DER PKCS#10") }
        guard let key = vouch_spki_public_key(vouch_csr_get0_spki(parsed)) else {
            VOUCH_CSR_free(parsed)
            throw cryptoFailure(.malformed, "CSR carries no usable public key")
        }
        self.pointer = parsed
        self.key = key
        self.der = der
        if let weak = Self.brokenDigests[vouch_csr_signature_digest(parsed)] {
            throw CryptoError(.badSignature, "CSR is signed with \(weak), which no longer proves possession of its key; "
                + "sign it with SHA-256 or stronger")
        }
        guard vouch_csr_verify(parsed, key) == 1 else {
            throw cryptoFailure(.badSignature, "CSR signature does not verify (no proof of possession)")
        }
    }

    /// Digests whose collisions can be made: a signature over one proves nothing about the key.
    static let brokenDigests: [Int32: String] = [NID_md2: "MD2", NID_md4: "MD4", NID_md5: "MD5", NID_md5_sha1: "MD5-SHA1",
                                                  NID_sha1: "SHA-1"]

    public convenience init(pem: String) throws {
        let parsed: OpaquePointer? = try withReadBIO(Array(pem.utf8)) { PEM_read_bio_X509_REQ($0, nil, nil, nil) }
        guard let parsed else { throw cryptoFailure(.malformed, "not a PEM CSR") }
        defer { X509_REQ_free(parsed) }
        try self.init(der: try derEncode { i2d_X509_REQ(parsed, $0) })
    }

    /// Creates and signs a CSR for `key` requesting the given SANs.
    public static func create(key: PrivateKey, subjectAltNames: SubjectAltNames, commonName: String? = nil) throws -> CertificateSigningRequest {
        guard let request = X509_REQ_new() else { throw cryptoFailure(.failure, "X509_REQ_new failed") }
        defer { X509_REQ_free(request) }
        X509_REQ_set_version(request, 0)
        if let commonName, let name = X509_REQ_get_subject_name(request) {
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, commonName, -1, -1, 0)
        }
        guard key.withUnsafeKeyPointer({ X509_REQ_set_pubkey(request, $0) }) == 1 else { throw cryptoFailure(.failure, "set CSR key") }
        if !subjectAltNames.isEmpty {
            let value = try subjectAltNameConfig(subjectAltNames)
            guard let ext = X509V3_EXT_conf_nid(nil, nil, NID_subject_alt_name, value) else {
                throw cryptoFailure(.failure, "bad subjectAltName")
            }
            defer { X509_EXTENSION_free(ext) }
            guard vouch_req_add_extension(request, ext) == 1 else { throw cryptoFailure(.failure, "add CSR extension") }
        }
        guard key.withUnsafeKeyPointer({ X509_REQ_sign(request, $0, signingDigest(for: $0)) }) > 0 else {
            throw cryptoFailure(.failure, "CSR signing failed")
        }
        return try CertificateSigningRequest(der: try derEncode { i2d_X509_REQ(request, $0) })
    }

    public var pem: String { PEM.encode(der, label: "CERTIFICATE REQUEST") }

    public var subjectAltNames: SubjectAltNames { readSubjectAltNames(vouch_csr_subject_alt_names(pointer)) }

    public var publicKeyDescription: PublicKeyDescription { describePublicKey(key) }

    /// The requested SubjectPublicKeyInfo, DER, as the CSR encodes it.
    public var publicKeyDER: [UInt8] {
        get throws { try derEncode { vouch_spki_der(vouch_csr_get0_spki(pointer), $0) } }
    }

    /// Whether the CSR's key is the key in `subjectPublicKeyInfo` (DER), compared as keys:
    /// the same EC point sent compressed or uncompressed is the same key.
    public func hasSameKey(asSubjectPublicKeyInfo spki: ArraySlice<UInt8>) throws -> Bool {
        let other: OpaquePointer? = spki.withUnsafeBufferPointer { buffer in
            guard let parsed = vouch_spki_parse(buffer.baseAddress, buffer.count) else { return nil }
            defer { vouch_spki_free(parsed) }
            return vouch_spki_public_key(parsed)
        }
        guard let other else { throw cryptoFailure(.malformed, "stored public key is not valid DER") }
        defer { EVP_PKEY_free(other) }
        return EVP_PKEY_eq(key, other) == 1
    }
}

/// Renders SANs for X509V3_EXT_conf_nid, refusing characters that would change its meaning.
func subjectAltNameConfig(_ names: SubjectAltNames) throws -> String {
    var parts: [String] = []
    for uri in names.uris { parts.append("URI:" + uri) }
    for dns in names.dnsNames { parts.append("DNS:" + dns) }
    for ip in names.ipAddresses { parts.append("IP:" + ip) }
    for part in parts where part.contains(where: { $0 == "," || $0.isWhitespace || $0.asciiValue == nil || $0.asciiValue! < 0x21 }) {
        throw CryptoError(.malformed, "subjectAltName entry \(part.debugDescription) contains a forbidden character")
    }
    return parts.joined(separator: ",")
}
