/// Reads fields straight out of certificate DER, for hot paths where a full
/// OpenSSL parse would also decode the public key (costly in OpenSSL 3).
public enum CertificateDER {
    /// The SubjectPublicKeyInfo bytes of a DER certificate, as encoded; nil if malformed.
    public static func subjectPublicKeyInfo(_ der: [UInt8]) -> ArraySlice<UInt8>? {
        guard let certificate = element(der, at: 0), certificate.tag == 0x30,
              let tbs = element(der, at: certificate.content), tbs.tag == 0x30 else { return nil }
        var index = tbs.content
        if let version = element(der, at: index), version.tag == 0xA0 { index = version.end }
        // serialNumber, signature, issuer, validity, subject
        for _ in 0..<5 {
            guard let field = element(der, at: index), field.end <= tbs.end else { return nil }
            index = field.end
        }
        guard let spki = element(der, at: index), spki.tag == 0x30, spki.end <= tbs.end else { return nil }
        return der[index..<spki.end]
    }

    /// The tag, content start and end of the TLV at `index`.
    private static func element(_ der: [UInt8], at index: Int) -> (tag: UInt8, content: Int, end: Int)? {
        guard index >= 0, index + 2 <= der.count else { return nil }
        var length = Int(der[index + 1])
        var content = index + 2
        if length & 0x80 != 0 {
            let count = length & 0x7F
            guard (1...4).contains(count), content + count <= der.count else { return nil }
            length = der[content..<content + count].reduce(0) { $0 << 8 | Int($1) }
            content += count
        }
        guard content + length <= der.count else { return nil }
        return (der[index], content, content + length)
    }
}
