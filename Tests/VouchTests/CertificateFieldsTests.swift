import Foundation
import Testing
import VouchCrypto
import VouchTLS
import X509

/// VouchTLS reads certificates and keys with swift-certificates alone; what it reads must be
/// what Vouch's OpenSSL code reads from the same bytes, for every key type an agent generates.
@Suite("Certificate fields read without OpenSSL")
struct CertificateFieldsTests {
    let issuerKey: VouchCrypto.PrivateKey
    let issuer: CertificateSigner

    init() throws {
        issuerKey = try VouchCrypto.PrivateKey(generating: .p256)
        issuer = try CertificateSigner(certificate: CertificateSigner.selfSigned(key: issuerKey, template: CertificateTemplate(
            role: .authority(pathLength: 0), serial: [0x01], subject: [("CN", "Vouch Intermediate CA")],
            notBefore: Date().addingTimeInterval(-60), notAfter: Date().addingTimeInterval(3600))), key: issuerKey)
    }

    func leaf(for key: VouchCrypto.PrivateKey, serial: [UInt8] = [0x42, 0x01],
              names: SubjectAltNames = SubjectAltNames(uris: ["spiffe://example.org/svc/web"])) throws -> X509Certificate {
        try issuer.sign(publicKeyOf: key, template: CertificateTemplate(
            role: .leaf, serial: serial, subject: [("CN", "web")], notBefore: Date().addingTimeInterval(-60),
            notAfter: Date().addingTimeInterval(600), subjectAltNames: names))
    }

    @Test("the agent's PKCS#8 key parses and matches its certificate, and no other key does", arguments: KeyAlgorithm.allCases)
    func keyMatch(algorithm: KeyAlgorithm) throws {
        let key = try VouchCrypto.PrivateKey(generating: algorithm)
        let certificate = try Certificate(derEncoded: leaf(for: key).der)
        let parsed = try Certificate.PrivateKey(pemEncoded: key.pkcs8PEM())
        #expect(certificate.matches(parsed))
        #expect(try Certificate.PublicKey(derEncoded: key.publicKeyDER) == certificate.publicKey, "SPKI from OpenSSL reads as the same key")
        #expect(!certificate.matches(try Certificate.PrivateKey(pemEncoded: issuerKey.pkcs8PEM())))
    }

    @Test("a key of the same type that is not the certificate's does not match")
    func sameTypeOtherKey() throws {
        let certificate = try Certificate(derEncoded: leaf(for: try VouchCrypto.PrivateKey(generating: .rsa2048)).der)
        let other = try VouchCrypto.PrivateKey(generating: .rsa2048)
        #expect(!certificate.matches(try Certificate.PrivateKey(pemEncoded: other.pkcs8PEM())))
    }

    @Test("serial, SANs, dates, name, DER and PEM read as OpenSSL reads them",
          arguments: [[0x42, 0x01], [0x80, 0x00, 0x01], [0x00, 0x7f]] as [[UInt8]])
    func sameFieldsAsOpenSSL(serial: [UInt8]) throws {
        let names = SubjectAltNames(uris: ["spiffe://example.org/svc/web"], dnsNames: ["web.internal", "localhost"],
                                    ipAddresses: ["127.0.0.1", "::1", "2001:db8::7"])
        let openSSL = try leaf(for: try VouchCrypto.PrivateKey(generating: .p256), serial: serial, names: names)
        let certificate = try Certificate(derEncoded: openSSL.der)
        #expect(certificate.serialHex == openSSL.serialHex)
        #expect(certificate.spiffeID == openSSL.spiffeID)
        let read = certificate.subjectAltNames
        #expect(read.uris == openSSL.subjectAltNames.uris && read.dnsNames == openSSL.subjectAltNames.dnsNames)
        #expect(read.ipAddresses == openSSL.subjectAltNames.ipAddresses && read.others == 0)
        #expect(certificate.notValidBefore == openSSL.notBefore && certificate.notValidAfter == openSSL.notAfter)
        #expect(certificate.commonName == "web")
        #expect(try certificate.der == openSSL.der)
        #expect(try certificate.pem == openSSL.pem)
        #expect(try Certificate.all(inPEM: "comment\n" + openSSL.pem + issuer.certificate.pem).map(\.serialHex) == [openSSL.serialHex, issuer.certificate.serialHex])
    }

    @Test("SAN types Vouch never grants are counted")
    func otherNameTypesAreCounted() throws {
        let key = try Certificate.PrivateKey(pemEncoded: issuerKey.pkcs8PEM())
        let name = try DistinguishedName { CommonName("web") }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(bytes: [0x05]), publicKey: key.publicKey,
            notValidBefore: Date(), notValidAfter: Date().addingTimeInterval(60), issuer: name, subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                SubjectAlternativeNames([.uniformResourceIdentifier("spiffe://example.org/svc/web"), .rfc822Name("web@example.org")])
            },
            issuerPrivateKey: key)
        #expect(certificate.subjectAltNames.others == 1)
        #expect(certificate.subjectAltNames.spiffeIDs == ["spiffe://example.org/svc/web"])
    }
}
