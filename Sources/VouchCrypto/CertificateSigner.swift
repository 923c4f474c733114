internal import CVouchOpenSSL
import Foundation

/// Signs certificates and CRLs with a CA key. Parsed once and reused for every
/// request; OpenSSL signing with a shared EVP_PKEY is thread-safe.
public final class CertificateSigner: @unchecked Sendable {
    public let certificate: X509Certificate
    let key: PrivateKey

    public init(certificate: X509Certificate, key: PrivateKey) throws {
        guard certificate.matches(key) else {
            throw CryptoError(.failure, "CA key does not match CA certificate")
        }
        self.certificate = certificate
        self.key = key
    }

    /// A self-signed certificate (a root CA).
    public static func selfSigned(key: PrivateKey, template: CertificateTemplate) throws -> X509Certificate {
        try buildCertificate(subjectKey: .key(key), issuer: nil, signingKey: key, template: template)
    }

    /// Signs the key of a verified CSR.
    public func sign(_ request: CertificateSigningRequest, template: CertificateTemplate) throws -> X509Certificate {
        try Self.buildCertificate(subjectKey: .request(request), issuer: certificate, signingKey: key, template: template)
    }

    /// Signs the public half of a locally generated key.
    public func sign(publicKeyOf subject: PrivateKey, template: CertificateTemplate) throws -> X509Certificate {
        try Self.buildCertificate(subjectKey: .key(subject), issuer: certificate, signingKey: key, template: template)
    }

    /// Where the new certificate's public key comes from.
    private enum SubjectKey {
        case key(PrivateKey)
        /// Copied from the CSR's SubjectPublicKeyInfo as encoded: no decode/encode round trip.
        case request(CertificateSigningRequest)

        func install(in cert: OpaquePointer) -> Bool {
            switch self {
            case .key(let key): return key.withUnsafeKeyPointer { X509_set_pubkey(cert, $0) } == 1
            case .request(let request): return request.withUnsafeSubjectKeyInfo { vouch_x509_copy_spki(cert, $0) } == 1
            }
        }
    }

    private static func buildCertificate(subjectKey: SubjectKey, issuer: X509Certificate?, signingKey: PrivateKey,
                                         template: CertificateTemplate) throws -> X509Certificate {
        guard let cert = X509_new() else { throw cryptoFailure(.failure, "X509_new failed") }
        var handedOver = false
        defer { if !handedOver { X509_free(cert) } }

        guard X509_set_version(cert, 2) == 1 else { throw cryptoFailure(.failure, "set version") }
        try withASN1Integer(template.serial) { guard X509_set_serialNumber(cert, $0) == 1 else { throw cryptoFailure(.failure, "set serial") } }
        guard ASN1_TIME_set(X509_getm_notBefore(cert), time_t(template.notBefore.timeIntervalSince1970)) != nil,
              ASN1_TIME_set(X509_getm_notAfter(cert), time_t(template.notAfter.timeIntervalSince1970)) != nil
        else { throw cryptoFailure(.failure, "set validity") }

        guard let name = X509_NAME_new() else { throw cryptoFailure(.failure, "X509_NAME_new failed") }
        defer { X509_NAME_free(name) }
        for (field, value) in template.subject {
            guard X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, value, -1, -1, 0) == 1 else {
                throw cryptoFailure(.malformed, "bad subject attribute \(field)")
            }
        }
        guard X509_set_subject_name(cert, name) == 1,
              (issuer?.withUnsafeX509Pointer { X509_set_issuer_name(cert, X509_get_subject_name($0)) } ?? X509_set_issuer_name(cert, name)) == 1,
              subjectKey.install(in: cert)
        else { throw cryptoFailure(.failure, "set names or key") }

        var extensions: [(Int32, String)] = []
        switch template.role {
        case .authority(let pathLength):
            extensions.append((NID_basic_constraints, "critical,CA:TRUE" + (pathLength.map { ",pathlen:\($0)" } ?? "")))
            extensions.append((NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"))
        case .leaf:
            extensions.append((NID_basic_constraints, "critical,CA:FALSE"))
            extensions.append((NID_key_usage, "critical,digitalSignature"))
            extensions.append((NID_ext_key_usage, "serverAuth,clientAuth"))
        }
        extensions.append((NID_subject_key_identifier, "hash"))
        extensions.append((NID_authority_key_identifier, "keyid:always"))
        if !template.subjectAltNames.isEmpty {
            // With an empty subject the SAN carries the identity and must be critical (RFC 5280 4.2.1.6).
            let critical = template.subject.isEmpty ? "critical," : ""
            extensions.append((NID_subject_alt_name, critical + (try subjectAltNameConfig(template.subjectAltNames))))
        }
        if let url = template.crlDistributionPoint {
            guard !url.contains(where: { $0 == "," || $0.isWhitespace }) else {
                throw CryptoError(.malformed, "CRL distribution point URL contains a forbidden character")
            }
            extensions.append((NID_crl_distribution_points, "URI:" + url))
        }

        // The context reads the issuer (its key identifier) while the extensions are built; a
        // self-signed certificate is its own issuer.
        func addExtensions(issuedBy issuerX509: OpaquePointer) throws {
            var v3 = X509V3_CTX()
            X509V3_set_ctx(&v3, issuerX509, cert, nil, nil, 0)
            for (nid, value) in extensions {
                guard let ext = X509V3_EXT_conf_nid(nil, &v3, nid, value) else {
                    throw cryptoFailure(.failure, "cannot build extension \(nid) = \(value)")
                }
                defer { X509_EXTENSION_free(ext) }
                guard X509_add_ext(cert, ext, -1) == 1 else { throw cryptoFailure(.failure, "add extension") }
            }
        }
        if let issuer { try issuer.withUnsafeX509Pointer(addExtensions) } else { try addExtensions(issuedBy: cert) }

        guard signingKey.withUnsafeKeyPointer({ X509_sign(cert, $0, signingDigest(for: $0)) }) > 0 else {
            throw signingKey.signingFailure("certificate signing failed")
        }
        handedOver = true
        return try X509Certificate(owning: cert)
    }

    /// A DER CRL v2 listing `entries`, with CRL number, AKI and per-entry reason codes.
    public func makeCRL(entries: [RevokedCertificateEntry], number: Int64, thisUpdate: Date, nextUpdate: Date) throws -> [UInt8] {
        guard let crl = X509_CRL_new() else { throw cryptoFailure(.failure, "X509_CRL_new failed") }
        defer { X509_CRL_free(crl) }
        guard X509_CRL_set_version(crl, 1) == 1,
              certificate.withUnsafeX509Pointer({ X509_CRL_set_issuer_name(crl, X509_get_subject_name($0)) }) == 1
        else { throw cryptoFailure(.failure, "set CRL issuer") }
        try withASN1Time(thisUpdate) { guard X509_CRL_set1_lastUpdate(crl, $0) == 1 else { throw cryptoFailure(.failure, "set thisUpdate") } }
        try withASN1Time(nextUpdate) { guard X509_CRL_set1_nextUpdate(crl, $0) == 1 else { throw cryptoFailure(.failure, "set nextUpdate") } }

        for entry in entries {
            guard let revoked = X509_REVOKED_new() else { throw cryptoFailure(.failure, "X509_REVOKED_new failed") }
            var added = false
            defer { if !added { X509_REVOKED_free(revoked) } }
            try withASN1Integer(entry.serial) { guard X509_REVOKED_set_serialNumber(revoked, $0) == 1 else { throw cryptoFailure(.failure, "set revoked serial") } }
            try withASN1Time(entry.revokedAt) { guard X509_REVOKED_set_revocationDate(revoked, $0) == 1 else { throw cryptoFailure(.failure, "set revocation date") } }
            // RFC 5280 5.3.1: omit the reason rather than encode unspecified (0).
            if entry.reason != 0 {
                guard let code = ASN1_ENUMERATED_new() else { throw cryptoFailure(.failure, "ASN1_ENUMERATED_new failed") }
                defer { ASN1_ENUMERATED_free(code) }
                guard ASN1_ENUMERATED_set(code, entry.reason) == 1,
                      X509_REVOKED_add1_ext_i2d(revoked, NID_crl_reason, UnsafeMutableRawPointer(code), 0, 0) == 1
                else { throw cryptoFailure(.failure, "set reason code") }
            }
            guard X509_CRL_add0_revoked(crl, revoked) == 1 else { throw cryptoFailure(.failure, "add revoked entry") }
            added = true
        }
        X509_CRL_sort(crl)

        guard let crlNumber = ASN1_INTEGER_new() else { throw cryptoFailure(.failure, "ASN1_INTEGER_new failed") }
        defer { ASN1_INTEGER_free(crlNumber) }
        guard ASN1_INTEGER_set_int64(crlNumber, number) == 1,
              X509_CRL_add1_ext_i2d(crl, NID_crl_number, UnsafeMutableRawPointer(crlNumber), 0, 0) == 1
        else { throw cryptoFailure(.failure, "set CRL number") }

        let aki = certificate.withUnsafeX509Pointer { issuer in
            var v3 = X509V3_CTX()
            X509V3_set_ctx(&v3, issuer, nil, nil, crl, 0)
            return X509V3_EXT_conf_nid(nil, &v3, NID_authority_key_identifier, "keyid:always")
        }
        guard let aki else {
            throw cryptoFailure(.failure, "CRL authority key identifier")
        }
        defer { X509_EXTENSION_free(aki) }
        guard X509_CRL_add_ext(crl, aki, -1) == 1 else { throw cryptoFailure(.failure, "add CRL AKI") }

        guard key.withUnsafeKeyPointer({ X509_CRL_sign(crl, $0, signingDigest(for: $0)) }) > 0 else {
            throw key.signingFailure("CRL signing failed")
        }
        return try derEncode { i2d_X509_CRL(crl, $0) }
    }
}

private func withASN1Integer(_ bytes: [UInt8], _ body: (UnsafeMutablePointer<ASN1_INTEGER>) throws -> Void) throws {
    guard let bn = BN_bin2bn(bytes, Int32(bytes.count), nil) else { throw cryptoFailure(.failure, "BN_bin2bn failed") }
    defer { BN_free(bn) }
    guard let integer = BN_to_ASN1_INTEGER(bn, nil) else { throw cryptoFailure(.failure, "BN_to_ASN1_INTEGER failed") }
    defer { ASN1_INTEGER_free(integer) }
    try body(integer)
}

private func withASN1Time(_ date: Date, _ body: (UnsafeMutablePointer<ASN1_TIME>) throws -> Void) throws {
    guard let time = ASN1_TIME_set(nil, time_t(date.timeIntervalSince1970)) else { throw cryptoFailure(.failure, "ASN1_TIME_set failed") }
    defer { ASN1_TIME_free(time) }
    try body(time)
}
