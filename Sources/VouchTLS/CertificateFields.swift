import SwiftASN1
import X509

/// What Vouch reads from a certificate, in the forms it logs, writes and compares.
extension Certificate {
    /// Every certificate in a PEM text, in order; blocks of other kinds are skipped.
    public static func all(inPEM pem: String) throws -> [Certificate] {
        try PEMDocument.parseMultiple(pemString: pem)
            .filter { $0.discriminator == defaultPEMDiscriminator }
            .map { try Certificate(derEncoded: $0.derBytes) }
    }

    /// The first certificate in a PEM text: the leaf, when the text is a chain.
    public init(firstInPEM pem: String) throws {
        guard let first = try Self.all(inPEM: pem).first else { throw TLSMaterialError("no certificate in the PEM text") }
        self = first
    }

    /// The DER encoding, byte for byte as it was parsed.
    public var der: [UInt8] {
        get throws {
            var serializer = DER.Serializer()
            try serializer.serialize(self)
            return serializer.serializedBytes
        }
    }

    /// The certificate as one PEM block.
    public var pem: String {
        get throws { try serializeAsPEM().pemString + "\n" }
    }

    /// Certificates joined into one PEM text, in order (a chain or a trust bundle).
    public static func pemBundle(_ certificates: [Certificate]) throws -> String {
        try certificates.map { try $0.pem }.joined()
    }

    /// The serial as Vouch writes it: lowercase hex without leading zero octets ("0" for zero).
    public var serialHex: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in serialNumber.bytes.drop(while: { $0 == 0 }) {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return text.isEmpty ? "0" : String(decoding: text, as: UTF8.self)
    }

    /// The subjectAltName entries; none when the extension is absent or does not parse.
    public var subjectAltNames: CertificateNames {
        guard let names = (try? extensions.subjectAlternativeNames) ?? nil else { return CertificateNames() }
        return CertificateNames(names)
    }

    /// The first SPIFFE ID among the URI SANs.
    public var spiffeID: String? { subjectAltNames.spiffeIDs.first }

    /// The subject's common name, if any.
    public var commonName: String? {
        subject.lazy.flatMap { $0 }.first { $0.type == .RDNAttributeType.commonName }.flatMap { String($0.value) }
    }

    /// Whether `key` is the private half of this certificate's public key.
    public func matches(_ key: PrivateKey) -> Bool {
        key.publicKey == publicKey
    }
}
