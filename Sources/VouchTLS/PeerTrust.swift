import NIOSSL
import SwiftASN1
import X509

/// The roots and known intermediates a `PeerCertificateVerifier` validates against, parsed once
/// when the trust is set rather than on every handshake: a presented copy of a known certificate
/// is recognised by its DER and neither parsed again nor offered twice to path building, and the
/// validated chain reuses their NIOSSL form.
struct PeerTrust: Sendable {
    struct Known: Sendable {
        let certificate: Certificate
        let nio: NIOSSLCertificate
        let subjectKeyIdentifier: ArraySlice<UInt8>?

        init(der: [UInt8]) throws {
            certificate = try Certificate(derEncoded: der)
            nio = try NIOSSLCertificate(bytes: der, format: .der)
            subjectKeyIdentifier = (try? certificate.extensions.subjectKeyIdentifier)??.keyIdentifier
        }
    }

    let roots: CertificateStore
    let intermediates: [Known]
    private let rootList: [Known]
    private let byDER: [[UInt8]: Known]

    init(rootsPEM: String, intermediatesPEM: String) throws {
        let roots = try Self.parse(rootsPEM)
        let intermediates = try Self.parse(intermediatesPEM)
        self.roots = CertificateStore(roots.map(\.known.certificate))
        self.rootList = roots.map(\.known)
        self.intermediates = intermediates.map(\.known)
        var byDER: [[UInt8]: Known] = [:]
        for (der, known) in roots + intermediates { byDER[der] = known }
        self.byDER = byDER
    }

    var isEmpty: Bool { rootList.isEmpty }

    /// The known certificate with exactly these DER bytes.
    func known(der: [UInt8]) -> Known? { byDER[der] }

    /// A validated chain in NIOSSL form, from the forms already at hand: the presented ones
    /// (`presented[i]` is `parsed[i]`) and the trust's; nothing is parsed again.
    func nioChain(_ chain: [Certificate], presented: [NIOSSLCertificate], parsed: [Certificate]) throws -> [NIOSSLCertificate] {
        try chain.map { certificate in
            if let index = parsed.firstIndex(of: certificate) { return presented[index] }
            if let known = rootList.first(where: { $0.certificate == certificate }) ?? intermediates.first(where: { $0.certificate == certificate }) {
                return known.nio
            }
            return try NIOSSLCertificate(bytes: certificate.der, format: .der)
        }
    }

    /// The known intermediates likely to have issued `leaf`. One whose subject key identifier
    /// differs from the leaf's authority key identifier did not issue a leaf Vouch signed (Vouch
    /// names every issuing key by both); path building would check its signature only to find that
    /// out, which after a few rotations (intermediates of one name) is most of a handshake's
    /// signature checks. The verifier offers the others only when no path is found without them.
    func intermediates(forIssuing leaf: Certificate) -> [Certificate] {
        guard let authorityKey = (try? leaf.extensions.authorityKeyIdentifier)??.keyIdentifier else {
            return intermediates.map(\.certificate)
        }
        return intermediates.filter { candidate in
            guard candidate.certificate.subject == leaf.issuer, let subjectKey = candidate.subjectKeyIdentifier else { return true }
            return subjectKey == authorityKey
        }.map(\.certificate)
    }

    private static func parse(_ pem: String) throws -> [(der: [UInt8], known: Known)] {
        try PEMDocument.parseMultiple(pemString: pem)
            .filter { $0.discriminator == Certificate.defaultPEMDiscriminator }
            .map { document in
                (document.derBytes, try Known(der: document.derBytes))
            }
    }
}
